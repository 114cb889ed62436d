// Voices by name and language: espeak-ng's codes ("en-GB-x-rp", "cmn") and Kokoro's ids ("af_bella") as
// words ("English (Received Pronunciation)", "Bella"), grouped by language. The browser's
// Intl.DisplayNames names languages and regions; a small table covers what it does not know.

const names = new Intl.DisplayNames(["en"], { type: "language", fallback: "none" });

// espeak-ng voices that are not plain language-region tags, and languages Intl may not name.
const ESPEAK = {
  "en-029": ["English", "Caribbean"],
  "en-gb-scotland": ["English", "Scottish"],
  "en-gb-x-gbclan": ["English", "Lancashire"],
  "en-gb-x-gbcwmd": ["English", "West Midlands"],
  "en-gb-x-rp": ["English", "Received Pronunciation"],
  "en-shaw": ["English", "Shavian script"],
  "en-us-nyc": ["English", "New York City"],
  "es-419": ["Spanish", "Latin American"],
  "ca-ba": ["Catalan", "Balearic"],
  "ca-nw": ["Catalan", "North-western"],
  "ca-va": ["Catalan", "Valencian"],
  "cmn-latn-pinyin": ["Chinese", "Mandarin, Pinyin"],
  cmn: ["Chinese", "Mandarin"],
  yue: ["Chinese", "Cantonese"],
  "yue-latn-jyutping": ["Chinese", "Cantonese, Jyutping"],
  hak: ["Chinese", "Hakka"],
  "fa-latn": ["Persian", "Latin script"],
  "ru-cl": ["Russian", "Classic"],
  "ru-lv": ["Russian", "Latvia"],
  "vi-vn-x-central": ["Vietnamese", "Central"],
  "vi-vn-x-south": ["Vietnamese", "Southern"],
  hyw: ["Armenian", "Western"],
  grc: ["Greek", "Ancient"],
  piqd: ["Klingon"],
  qdb: ["Lang Belta"],
  py: ["Pyash"],
  qya: ["Quenya"],
  sjn: ["Sindarin"],
  lfn: ["Lingua Franca Nova"],
  jbo: ["Lojban"],
  mto: ["Totontepec Mixe"],
  nci: ["Classical Nahuatl"],
  bpy: ["Bishnupriya Manipuri"],
  ltg: ["Latgalian"],
  nog: ["Nogai"],
  shn: ["Shan"],
  smj: ["Lule Sami"],
  kok: ["Konkani"],
  quc: ["K’iche’"],
  pap: ["Papiamento"],
  chr: ["Cherokee"],
};

// Kokoro: the first letter is the language, the second the voice (f: female, m: male).
const KOKORO = {
  a: ["English", "American"], b: ["English", "British"], e: ["Spanish"], f: ["French"], h: ["Hindi"],
  i: ["Italian"], j: ["Japanese"], p: ["Portuguese", "Brazilian"], z: ["Chinese", "Mandarin"],
};

function languageName(code) {
  try {
    return names.of(code) || null;
  } catch {
    return null; // not a well-formed tag
  }
}

function title(word) {
  return word.charAt(0).toUpperCase() + word.slice(1);
}

/** `{id, name, language}` for a voice id: `language` groups the picker, `name` is the option's words. */
export function describeVoice(id) {
  const kokoro = /^([a-z])([fm])_([a-z0-9]+)$/i.exec(id);
  if (kokoro && KOKORO[kokoro[1].toLowerCase()]) {
    const [language, accent] = KOKORO[kokoro[1].toLowerCase()];
    const who = kokoro[2].toLowerCase() === "f" ? "female" : "male";
    return { id, language, name: `${title(kokoro[3])} (${accent ? `${accent}, ` : ""}${who})` };
  }
  const [base, variant] = id.split("+", 2); // espeak's voice+variant ("en-US+f3")
  const key = base.toLowerCase();
  const known = ESPEAK[key];
  let language;
  let detail = "";
  if (known) [language, detail = ""] = known;
  else {
    const [lang, ...rest] = base.split("-");
    language = languageName(lang) || base;
    const region = rest.length ? languageName(base) : null; // "American English", "Swiss French"
    if (rest.length) detail = region && region !== language ? region : rest.join("-");
  }
  let name = detail ? `${language} (${detail})` : language;
  if (detail && detail.includes(language)) name = detail; // "American English", not "English (American English)"
  if (variant) name += `, ${variant}`;
  return { id, language, name };
}

/** The voices grouped by language (languages A-Z, names A-Z within each): [[language, [voice...]], ...]. */
export function groupVoices(ids) {
  const groups = new Map();
  for (const voice of ids.map(describeVoice)) {
    if (!groups.has(voice.language)) groups.set(voice.language, []);
    groups.get(voice.language).push(voice);
  }
  for (const list of groups.values()) list.sort((a, b) => a.name.localeCompare(b.name));
  return [...groups.entries()].sort(([a], [b]) => a.localeCompare(b));
}
