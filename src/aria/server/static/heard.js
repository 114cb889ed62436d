// An interrupted answer: the part the person heard and the part they did not.
//
// The server's `response_done` (interrupted) carries what was heard; the page streamed the whole answer.
// The heard text is a prefix of the answer apart from whitespace; when it is not (a server that rewords or
// normalises it), the split falls back to comparing words, then to counting them.

const words = (text) => text.split(/\s+/).filter(Boolean);
const plain = (word) => word.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, "");

/** `answer` cut where `heard` ends: `{heard, unheard, exact}`, `heard + unheard` being the whole answer
 * when `exact` (heard is a prefix apart from whitespace); else `heard` is the server's text and `unheard`
 * the answer's words after as many words as were heard. */
export function splitHeard(answer, heard) {
  answer = answer || "";
  heard = (heard || "").trim();
  if (!heard) return { heard: "", unheard: answer, exact: true };
  const target = heard.replace(/\s+/g, "");
  let i = 0;
  let j = 0;
  while (i < answer.length && j < target.length) {
    if (/\s/.test(answer[i])) i += 1;
    else if (answer[i] === target[j]) { i += 1; j += 1; }
    else break;
  }
  if (j === target.length) return { heard: answer.slice(0, i), unheard: answer.slice(i), exact: true };
  // Not a prefix: skip the answer's words that match the heard ones (case and punctuation aside); else
  // up to the heard text's last word when it is near where as many words end, else that many words.
  const said = words(answer);
  const got = words(heard);
  let k = 0;
  while (k < got.length && k < said.length && plain(got[k]) === plain(said[k])) k += 1;
  let skip = Math.min(got.length, said.length);
  if (k === got.length) skip = k;
  else {
    const last = plain(got[got.length - 1]);
    for (let p = Math.max(0, got.length - 3); p < Math.min(said.length, got.length + 3); p += 1) {
      if (plain(said[p]) === last) { skip = p + 1; break; }
    }
  }
  const rest = said.slice(skip).join(" ");
  return { heard, unheard: rest ? ` ${rest}` : "", exact: false };
}

/** Fill `node` with the heard part as plain text and the rest in a distinct "not heard" span. */
export function renderHeard(node, answer, heard) {
  const split = splitHeard(answer, heard);
  node.replaceChildren();
  if (split.heard) node.append(split.heard);
  if (split.unheard.trim()) {
    const space = split.unheard.match(/^\s*/)[0]; // the gap between the parts is not struck through
    if (space) node.append(space);
    const rest = document.createElement("span");
    rest.className = "unheard";
    rest.title = "not heard";
    rest.dataset.exact = String(split.exact);
    const label = document.createElement("span");
    label.className = "visually-hidden";
    label.textContent = " (not heard:) ";
    rest.append(label, split.unheard.trim());
    node.append(rest);
  }
  return split;
}
