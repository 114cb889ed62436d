"""Modes end to end over fakes: the engine slots a mode needs, and the pipeline :func:`mode_pipeline`
builds for it: dictation, visual chat, the router's three routes, deep dive, the commands hook, and the
monitor's voice commands."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from aria.core.config import Settings, load_settings
from aria.core.events import Event, EventType
from aria.core.history import History
from aria.core.modespec import BUILTIN_MODES, LLMOverride, ModeSpec
from aria.errors import InvalidInput
from aria.pipeline.answer import HAND_OFF, ROUTER_PROMPT
from aria.pipeline.mode_pipelines import Loadout, engine_key, loadout_slots, mode_pipeline, watch_command
from aria.pipeline.outputs import (
    AudioOut,
    MetricsOut,
    ResponseDone,
    StateOut,
    TextOut,
    ToolResultOut,
    TranscriptOut,
)
from aria.pipeline.voice import VoicePipeline
from aria.testing import FakeLLM, FakeSTT, FakeTTS, FakeVAD, TurnHarness, tone
from aria.types import ImageFrame, Message, ToolCall, ToolSpec

# -- helpers -------------------------------------------------------------------------------------------


def settings(**overrides: Any) -> Settings:
    """Settings from defaults plus dotted-key overrides, never from the real environment."""
    return load_settings(overrides=overrides, env={})


def build(
    mode: str,
    *,
    config: Settings | None = None,
    stt: FakeSTT | None = None,
    llm: FakeLLM | None = None,
    router: FakeLLM | None = None,
    tts: FakeTTS | None = None,
    vad: FakeVAD | None = None,
    history: History | None = None,
) -> VoicePipeline:
    config = config or settings()
    loadout = Loadout(stt=stt, llm=llm, router=router, tts=tts)
    return mode_pipeline(mode, config.all_modes()[mode], config, loadout, vad=vad, history=history)


def image(level: int) -> ImageFrame:
    """A flat grey picture (0 black .. 255 white)."""
    return ImageFrame(np.full((8, 8, 3), level, dtype=np.uint8))


def states(h: TurnHarness, turn_id: str) -> list[str]:
    return [o.state for o in h.outputs(StateOut, turn_id)]


@dataclass
class Outcome:
    ok: bool
    content: str
    data: Any = None


class Calculator:
    """A ToolExecutor test double with one tool that evaluates ``a <op> b``."""

    def __init__(self) -> None:
        self.calls: list[tuple[ToolCall, str]] = []

    def specs(self) -> tuple[ToolSpec, ...]:
        schema = {"type": "object", "properties": {"expression": {"type": "string"}}}
        return (ToolSpec("calculator", "Evaluate arithmetic", schema),)

    async def run_tool(self, call: ToolCall, turn_id: str) -> Outcome:
        self.calls.append((call, turn_id))
        a, op, b = json.loads(call.arguments)["expression"].split()
        value = {"*": int(a) * int(b), "+": int(a) + int(b)}[op]
        return Outcome(True, str(value), {"value": value})


# -- loadout_slots -------------------------------------------------------------------------------------


def slot_names(mode: str, config: Settings) -> dict[str, str]:
    return {role: plan.name for role, plan in loadout_slots(mode, config.all_modes()[mode], config).items()}


@pytest.mark.parametrize(
    ("mode", "slots"),
    [
        ("voice_chat", {"stt": "stt", "llm": "llm", "tts": "tts"}),
        ("broadcast", {"stt": "stt"}),
        ("visual_chat", {"stt": "stt", "llm": "llm", "tts": "tts"}),
        ("active_monitor", {"stt": "stt", "llm": "llm", "tts": "tts"}),
        # Without a router model of its own the main model routes: the same slot.
        ("router", {"stt": "stt", "llm": "llm", "router": "llm", "tts": "tts"}),
        # The built-in deep dive changes request settings only: it shares the main model.
        ("deep_dive", {"stt": "stt", "llm": "llm", "tts": "tts"}),
    ],
)
def test_builtin_mode_slots(mode: str, slots: dict[str, str]) -> None:
    config = settings()
    plan = loadout_slots(mode, config.all_modes()[mode], config)
    assert {role: p.name for role, p in plan.items()} == slots
    assert list(plan) == list(slots)  # roles in the order stt, llm, router, tts
    assert {role: p.kind for role, p in plan.items()} == {
        role: "llm" if role == "router" else role for role in slots
    }
    for role, p in plan.items():
        if p.name in ("stt", "llm", "tts"):
            assert p.settings is config, role  # shared slots are built from the main settings


def test_deep_dive_with_its_own_model_gets_its_own_slot() -> None:
    config = settings(**{"modes.deep_dive.llm.options": {"model": "big"}, "llm.options": {"model": "small"}})
    plan = loadout_slots("deep_dive", config.all_modes()["deep_dive"], config)
    assert {role: p.name for role, p in plan.items()} == {"stt": "stt", "llm": "llm:deep_dive", "tts": "tts"}
    own = plan["llm"].settings
    assert own.llm.options == {"model": "big"}
    assert own.llm.max_tokens == 2048
    assert config.llm.options == {"model": "small"}  # the main settings are unchanged
    assert engine_key(own) != engine_key(config)


def test_router_with_its_own_model_gets_a_router_slot() -> None:
    config = settings(**{"modes.router.router.options": {"model": "tiny"}})
    plan = loadout_slots("router", config.all_modes()["router"], config)
    assert {role: p.name for role, p in plan.items()} == {
        "stt": "stt",
        "llm": "llm",
        "router": "router:router",
        "tts": "tts",
    }
    assert plan["router"].kind == "llm"
    assert plan["router"].settings.llm.options == {"model": "tiny"}
    assert plan["llm"].settings is config


@pytest.mark.parametrize(
    "override",
    [
        {"temperature": 0.1},
        {"system_prompt": "Be terse."},
        {"max_tokens": 64},
        {"context_tokens": 4096},
        {"temperature": 1.5, "system_prompt": "Another brief.", "max_tokens": 9},
    ],
)
def test_request_level_changes_share_the_main_slot(override: dict[str, Any]) -> None:
    config = settings(**{f"modes.deep_dive.llm.{key}": value for key, value in override.items()})
    assert slot_names("deep_dive", config)["llm"] == "llm"
    spec = ModeSpec(steps=["stt", "llm", "router", "tts"], router=LLMOverride.model_validate(override))
    assert loadout_slots("custom", spec, config)["router"].name == "llm"


@pytest.mark.parametrize(
    "override",
    [
        {"backend": "ollama"},
        {"fallback": []},
        {"options": {"model": "big"}},
        {"timeout_s": 5.0},
        {"first_token_timeout_s": 1.0},
        {"memory_mb": 4000.0},
    ],
)
def test_engine_level_changes_get_their_own_slot(override: dict[str, Any]) -> None:
    config = settings()
    spec = ModeSpec(llm=LLMOverride.model_validate(override))
    assert loadout_slots("mine", spec, config)["llm"].name == "llm:mine"


def test_an_override_equal_to_the_main_settings_shares_the_slot() -> None:
    config = settings(**{"llm.options": {"model": "same"}, "modes.deep_dive.llm.options": {"model": "same"}})
    assert slot_names("deep_dive", config)["llm"] == "llm"


def test_tts_disabled_or_none_and_stt_none_leave_their_slots_out() -> None:
    assert "tts" not in slot_names("voice_chat", settings(**{"tts.enabled": False}))
    assert "tts" not in slot_names("voice_chat", settings(**{"tts.backend": "none"}))
    no_stt = slot_names("voice_chat", settings(**{"stt.backend": "none"}))
    assert no_stt == {"llm": "llm", "tts": "tts"}
    assert slot_names("broadcast", settings(**{"stt.backend": "none"})) == {}


# -- broadcast (dictation) -----------------------------------------------------------------------------


async def test_broadcast_transcribes_and_never_answers() -> None:
    llm, tts = FakeLLM(), FakeTTS()
    history = History()
    pipeline = build(
        "broadcast",
        stt=FakeSTT(FakeSTT.Config(texts=("take a note buy milk",), partial_every=5)),
        llm=llm,  # loaded for another mode: dictation must not use it
        tts=tts,
        vad=FakeVAD(),
        history=history,
    )
    assert pipeline.llm is None
    assert pipeline.tts is None
    assert pipeline.config.mode == "broadcast"
    assert not pipeline.answering
    async with TurnHarness(pipeline) as h:
        await h.speak(speech_ms=400, silence_ms=300)
        done = await h.wait_for(ResponseDone)
        metrics = await h.wait_for(MetricsOut)
        tid = done.turn_id
        assert metrics.turn_id == tid
        assert done == ResponseDone(tid, "")
        transcripts = h.outputs(TranscriptOut, tid)
        assert [t.final for t in transcripts] == [False] * (len(transcripts) - 1) + [True]
        assert len(transcripts) >= 2
        assert transcripts[0].text == "take"
        assert transcripts[-1].text == "take a note buy milk"
        assert h.kinds(tid) == [
            "StateOut",  # listening
            "TranscriptOut",  # partials
            "StateOut",  # processing
            "TranscriptOut",  # final
            "ResponseDone",
            "StateOut",  # idle
            "MetricsOut",
        ]
        assert states(h, tid) == ["listening", "processing", "idle"]
        assert h.outputs(StateOut, tid)[-1].reason == "transcribed"
        assert h.outputs(TextOut) == []
        assert h.outputs(AudioOut) == []
        assert metrics.extra == {}
        assert "done" in metrics.waterfall
    assert (llm.calls, tts.calls) == (0, 0)
    assert [(m.role, m.content, m.modality, m.mode) for m in history] == [
        ("user", "take a note buy milk", "audio", "broadcast")
    ]


async def test_broadcast_keeps_transcribing_utterance_after_utterance() -> None:
    history = History()
    pipeline = build(
        "broadcast",
        stt=FakeSTT(FakeSTT.Config(texts=("first line", "second line"))),
        vad=FakeVAD(),
        history=history,
    )
    async with TurnHarness(pipeline) as h:
        await h.speak()
        first = await h.wait_for(ResponseDone)
        mark = len(h.received)
        await h.speak()
        second = await h.wait_for(ResponseDone, after=mark)
        assert first.turn_id != second.turn_id
    assert [m.content for m in history] == ["first line", "second line"]
    assert all(m.role == "user" for m in history)


async def test_broadcast_refuses_typed_text() -> None:
    pipeline = build("broadcast", stt=FakeSTT(), vad=FakeVAD())
    async with TurnHarness(pipeline) as h:
        with pytest.raises(InvalidInput, match="only transcribes"):
            pipeline.push_text("hello")
        with pytest.raises(InvalidInput, match="broadcast mode"):
            pipeline.push_text("hello")
        assert h.received == []
        assert len(pipeline.history) == 0


async def test_broadcast_nothing_recognised_records_nothing() -> None:
    history = History()
    pipeline = build("broadcast", stt=FakeSTT(FakeSTT.Config(texts=("",))), vad=FakeVAD(), history=history)
    async with TurnHarness(pipeline) as h:
        await h.speak()
        metrics = await h.wait_for(MetricsOut)
        assert h.outputs(ResponseDone) == []
        assert h.outputs(StateOut, metrics.turn_id)[-1].reason == "nothing recognised"
    assert len(history) == 0


# -- visual chat -------------------------------------------------------------------------------------


async def test_visual_chat_sends_the_newest_picture_with_the_question() -> None:
    llm = FakeLLM(FakeLLM.Config(vision_replies=("It looks bright.", "It looks dark.")))
    pictures = [image(240), image(10)]
    shown: list[ImageFrame] = []

    def newest() -> ImageFrame:
        shown.append(pictures[len(shown)])
        return shown[-1]

    pipeline = build("visual_chat", llm=llm)
    pipeline.pictures = newest
    assert pipeline.config.mode == "visual_chat"
    async with TurnHarness(pipeline) as h:
        first = pipeline.push_text("what do you see?")
        done = await h.wait_for(ResponseDone, lambda d: d.turn_id == first.id)
        assert done.text == "It looks bright."
        mark = len(h.received)
        second = pipeline.push_text("and now?")
        done = await h.wait_for(ResponseDone, lambda d: d.turn_id == second.id, after=mark)
        assert done.text == "It looks dark."

    one, two = llm.requests
    assert one.messages[-1].role == "user"
    assert one.messages[-1].images == (pictures[0],)
    assert [m.content for m in two.messages] == ["what do you see?", "It looks bright.", "and now?"]
    # Only the newest question keeps its picture; the older one keeps its text and a count.
    assert two.messages[-1].images == (pictures[1],)
    assert two.messages[0].images == ()
    assert two.messages[0].metadata["image_count"] == 1
    assert all("image_count" not in m.metadata for m in two.messages[1:])
    # The history itself keeps every picture.
    history = list(pipeline.history)
    assert [m.images for m in history if m.role == "user"] == [(pictures[0],), (pictures[1],)]
    assert all(m.mode == "visual_chat" for m in history)


async def test_visual_chat_without_a_picture_sends_none() -> None:
    llm = FakeLLM(FakeLLM.Config(replies=("I cannot see anything.",), vision_replies=("bright", "dark")))
    pipeline = build("visual_chat", llm=llm)
    pipeline.pictures = lambda: None
    async with TurnHarness(pipeline) as h:
        pipeline.push_text("what is this?")
        done = await h.wait_for(ResponseDone)
    assert done.text == "I cannot see anything."
    assert all(m.images == () for m in llm.requests[0].messages)


async def test_a_pipeline_without_pictures_sends_no_images() -> None:
    llm = FakeLLM(FakeLLM.Config(replies=("Hello.",)))
    pipeline = build("voice_chat", llm=llm)
    assert pipeline.pictures is None
    async with TurnHarness(pipeline) as h:
        pipeline.push_text("hi")
        await h.wait_for(ResponseDone)
    assert all(m.images == () for m in llm.requests[0].messages)
    assert all(m.images == () for m in pipeline.history)


async def test_older_pictures_are_stripped_even_when_the_newest_question_has_none() -> None:
    # A picture sent two questions ago is the newest one in the window: it is the one kept.
    llm = FakeLLM(FakeLLM.Config(replies=("One.", "Two.", "Three.")))
    frames = iter([image(200), image(100), None])
    pipeline = build("visual_chat", llm=llm)
    pipeline.pictures = lambda: next(frames)
    async with TurnHarness(pipeline) as h:
        for text in ("a", "b", "c"):
            turn = pipeline.push_text(text)
            await h.wait_for(ResponseDone, lambda d, tid=turn.id: d.turn_id == tid)
    last = llm.requests[-1].messages
    assert [m.content for m in last] == ["a", "One.", "b", "Two.", "c"]
    assert [len(m.images) for m in last] == [0, 0, 1, 0, 0]
    assert last[0].metadata["image_count"] == 1
    assert "image_count" not in last[2].metadata


# -- router ------------------------------------------------------------------------------------------


def router_pipeline(
    router_reply: str, main_reply: str = "The main model answers."
) -> tuple[VoicePipeline, FakeLLM, FakeLLM, Calculator]:
    main = FakeLLM(FakeLLM.Config(replies=(main_reply,)))
    router = FakeLLM(FakeLLM.Config(replies=(router_reply,)))
    pipeline = build("router", llm=main, router=router)
    tools = Calculator()
    pipeline.tools = tools
    return pipeline, main, router, tools


def routed(events: list[Event], turn_id: str) -> list[str]:
    return [e.payload["route"] for e in events if e.type == EventType.ROUTED and e.correlation_id == turn_id]


async def test_router_answers_directly_and_the_main_model_is_never_called() -> None:
    pipeline, main, router, tools = router_pipeline("It is a quarter past nine.")
    assert pipeline.router is router
    async with TurnHarness(pipeline) as h:
        turn = pipeline.push_text("hello, how are you?")
        done = await h.wait_for(ResponseDone)
        metrics = await h.wait_for(MetricsOut)
        await pipeline.bus.drained()
        assert done.text == "It is a quarter past nine."
        assert h.texts(turn.id) == "It is a quarter past nine."
        assert h.kinds(turn.id) == ["StateOut", "TextOut", "ResponseDone", "StateOut", "MetricsOut"]
        assert states(h, turn.id) == ["processing", "responding", "idle"]
        assert metrics.extra == {"route": "answer"}
        assert routed(h.events, turn.id) == ["answer"]
    assert main.calls == 0
    assert tools.calls == []
    (asked,) = router.requests
    assert [t.name for t in asked.tools] == ["calculator", HAND_OFF.name]
    assert asked.tools[-1] == HAND_OFF
    system = pipeline.config.system_prompt
    assert system is not None
    assert asked.system_prompt == f"{system}\n\n{ROUTER_PROMPT}"
    assert asked.max_tokens <= 256
    assert pipeline.config.max_tokens > 256  # the cap is the router's, not the mode's
    assert [m.content for m in asked.messages] == ["hello, how are you?"]


async def test_router_calls_a_tool_and_the_main_model_answers_with_its_result() -> None:
    pipeline, main, router, tools = router_pipeline(
        'TOOL:calculator:{"expression": "6 * 7"}', "Six times seven is 42."
    )
    async with TurnHarness(pipeline) as h:
        turn = pipeline.push_text("what is six times seven?")
        done = await h.wait_for(ResponseDone)
        metrics = await h.wait_for(MetricsOut)
        await pipeline.bus.drained()
        assert done.text == "Six times seven is 42."
        results = h.outputs(ToolResultOut, turn.id)
        assert [(r.tool, r.ok, r.content, r.data) for r in results] == [
            ("calculator", True, "42", {"value": 42})
        ]
        assert results[0].call_id == "call_1"
        assert h.kinds(turn.id) == [
            "StateOut",  # processing
            "ToolResultOut",
            "StateOut",  # responding: the first text is the main model's
            "TextOut",
            "ResponseDone",
            "StateOut",
            "MetricsOut",
        ]
        assert metrics.extra == {"route": "tool"}
        assert routed(h.events, turn.id) == ["tool"]
    assert [(call.name, tid) for call, tid in tools.calls] == [("calculator", turn.id)]
    assert (router.calls, main.calls) == (1, 1)
    (answer,) = main.requests
    assert [(m.role, m.content) for m in answer.messages] == [
        ("user", "what is six times seven?"),
        ("assistant", ""),
        ("tool", "42"),
    ]
    assert answer.messages[1].metadata["tool_calls"][0].name == "calculator"
    assert answer.messages[2].metadata == {"tool_call_id": "call_1", "name": "calculator"}
    # The main model gets the mode's own request: no hand_off, no router brief, the full token budget.
    assert [t.name for t in answer.tools] == ["calculator"]
    assert answer.system_prompt == pipeline.config.system_prompt
    assert answer.max_tokens == pipeline.config.max_tokens


async def test_router_hands_off_and_the_main_model_answers_the_same_messages() -> None:
    pipeline, main, router, tools = router_pipeline("TOOL:hand_off:{}", "A long, considered answer.")
    async with TurnHarness(pipeline) as h:
        turn = pipeline.push_text("explain general relativity")
        done = await h.wait_for(ResponseDone)
        metrics = await h.wait_for(MetricsOut)
        await pipeline.bus.drained()
        assert done.text == "A long, considered answer."
        assert h.outputs(ToolResultOut) == []
        assert h.kinds(turn.id) == ["StateOut", "TextOut", "ResponseDone", "StateOut", "MetricsOut"]
        assert metrics.extra == {"route": "hand_off"}
        assert routed(h.events, turn.id) == ["hand_off"]
        tool_events = [e for e in h.events if e.type == EventType.TOOL_RESULT]
        assert tool_events == []
    assert tools.calls == []
    (first,), (second,) = router.requests, main.requests
    assert second.messages == first.messages
    assert [m.content for m in second.messages] == ["explain general relativity"]
    assert HAND_OFF not in second.tools
    assert second.system_prompt == pipeline.config.system_prompt
    assert second.max_tokens == pipeline.config.max_tokens
    assert [(m.role, m.content) for m in pipeline.history] == [
        ("user", "explain general relativity"),
        ("assistant", "A long, considered answer."),
    ]


async def test_router_without_its_own_model_routes_with_the_main_one() -> None:
    main = FakeLLM(FakeLLM.Config(replies=("TOOL:hand_off:{}", "The main model, asked again.")))
    pipeline = build("router", llm=main, router=main)
    assert pipeline.router is main
    async with TurnHarness(pipeline) as h:
        pipeline.push_text("why is the sky blue?")
        done = await h.wait_for(ResponseDone)
        metrics = await h.wait_for(MetricsOut)
    assert done.text == "The main model, asked again."
    assert metrics.extra == {"route": "hand_off"}
    routing, answering = main.requests
    assert [t.name for t in routing.tools] == [HAND_OFF.name]  # no tools configured: hand_off only
    assert routing.system_prompt is not None
    assert routing.system_prompt.endswith(ROUTER_PROMPT)
    assert answering.tools == ()
    assert answering.system_prompt == pipeline.config.system_prompt


async def test_modes_without_the_router_step_have_no_router_and_no_route() -> None:
    main = FakeLLM(FakeLLM.Config(replies=("Plain answer.",)))
    spare = FakeLLM()
    pipeline = build("voice_chat", llm=main, router=spare)
    assert pipeline.router is None
    async with TurnHarness(pipeline) as h:
        pipeline.push_text("hi")
        metrics = await h.wait_for(MetricsOut)
    assert metrics.extra == {}
    assert spare.calls == 0
    assert HAND_OFF not in main.requests[0].tools


# -- deep dive ---------------------------------------------------------------------------------------


async def test_deep_dive_takes_the_overrides_request_settings() -> None:
    builtin = BUILTIN_MODES["deep_dive"].llm
    assert builtin is not None
    llm = FakeLLM(FakeLLM.Config(replies=("Let us think it through.",)))
    pipeline = build("deep_dive", llm=llm)
    cfg = pipeline.config
    assert (cfg.system_prompt, cfg.max_tokens, cfg.temperature, cfg.mode) == (
        builtin.system_prompt,
        builtin.max_tokens,
        builtin.temperature,
        "deep_dive",
    )
    async with TurnHarness(pipeline) as h:
        pipeline.push_text("why do stars twinkle?")
        await h.wait_for(ResponseDone)
    (request,) = llm.requests
    assert (request.system_prompt, request.max_tokens, request.temperature) == (
        builtin.system_prompt,
        builtin.max_tokens,
        builtin.temperature,
    )
    assert {m.mode for m in pipeline.history} == {"deep_dive"}


def test_deep_dive_config_changes_one_request_setting_and_keeps_the_rest() -> None:
    config = settings(**{"modes.deep_dive.llm.temperature": 0.9, "llm.system_prompt": "Main brief."})
    deep = build("deep_dive", config=config, llm=FakeLLM()).config
    assert (deep.temperature, deep.max_tokens) == (0.9, 2048)
    assert deep.system_prompt is not None
    assert deep.system_prompt.startswith("You are Aria in deep-dive mode.")
    chat = build("voice_chat", config=config, llm=FakeLLM()).config
    assert (chat.temperature, chat.max_tokens, chat.system_prompt) == (0.7, 512, "Main brief.")


def test_mode_pipeline_wires_what_each_mode_uses() -> None:
    stt, llm, tts, vad = FakeSTT(), FakeLLM(), FakeTTS(), FakeVAD()
    chat = build("voice_chat", stt=stt, llm=llm, tts=tts, vad=vad)
    assert (chat.stt, chat.llm, chat.tts, chat.vad) == (stt, llm, tts, vad)
    assert chat.speaking
    quiet = build("voice_chat", config=settings(**{"tts.enabled": False}), stt=stt, llm=llm, tts=tts, vad=vad)
    assert quiet.tts is None
    assert not quiet.speaking
    deaf = build("voice_chat", stt=stt, llm=llm, tts=tts, vad=None)  # no VAD: no listening
    assert (deaf.stt, deaf.vad) == (None, None)
    with pytest.raises(InvalidInput, match="text only"):
        deaf.push_audio(tone(20)[0])
    text_mode = ModeSpec(inputs=["text"], steps=["llm"])
    typed = mode_pipeline("typed", text_mode, settings(), Loadout(stt=stt, llm=llm, tts=tts), vad=vad)
    assert (typed.stt, typed.vad, typed.tts, typed.llm) == (None, None, None, llm)
    assert typed.config.mode == "typed"


# -- the commands hook ---------------------------------------------------------------------------------


async def test_a_command_reply_is_spoken_as_the_answer_and_the_model_is_not_asked() -> None:
    llm = FakeLLM(FakeLLM.Config(replies=("The model's answer.",)))
    tts = FakeTTS()
    asked: list[str] = []

    def commands(text: str) -> str | None:
        asked.append(text)
        found = watch_command(text)
        return f"Okay, I will tell you when {found[1]}." if found and found[0] == "watch" else None

    pipeline = build("active_monitor", llm=llm, tts=tts)
    pipeline.commands = commands
    assert pipeline.speaking
    async with TurnHarness(pipeline) as h:
        turn = pipeline.push_text("tell me when the kettle boils")
        done = await h.wait_for(ResponseDone)
        await h.wait_for(MetricsOut)
        reply = "Okay, I will tell you when the kettle boils."
        assert done.text == reply
        assert h.texts(turn.id) == reply
        assert [text for text, _, _ in tts.requests] == [reply]
        assert h.audio_frames(turn.id)
        assert states(h, turn.id) == ["processing", "responding", "idle"]
        kinds = h.kinds(turn.id)
        assert kinds.index("AudioOut") < kinds.index("ResponseDone")
        assert llm.calls == 0

        mark = len(h.received)
        second = pipeline.push_text("what's the weather?")
        done = await h.wait_for(ResponseDone, after=mark)
        assert done.turn_id == second.id
        assert done.text == "The model's answer."
    assert llm.calls == 1
    assert asked == ["tell me when the kettle boils", "what's the weather?"]
    assert [(m.role, m.content) for m in pipeline.history] == [
        ("user", "tell me when the kettle boils"),
        ("assistant", reply),
        ("user", "what's the weather?"),
        ("assistant", "The model's answer."),
    ]
    # The command's exchange stays in the conversation the model sees next.
    assert [m.content for m in llm.requests[0].messages][:2] == ["tell me when the kettle boils", reply]


async def test_a_one_piece_answer_says_responding_before_its_audio() -> None:
    """Answer audio carries no turn id: it belongs to "the turn of the latest state message with state
    responding" (docs/protocol.md). A command's reply comes as one piece (so does a one-word answer); its
    first audio block must still follow the responding state, and the waterfall must not show audio
    before the first token."""
    pipeline = build("active_monitor", llm=FakeLLM(), tts=FakeTTS())
    pipeline.commands = lambda text: "Okay, I will tell you when it rains."
    async with TurnHarness(pipeline) as h:
        turn = pipeline.push_text("tell me when it rains")
        metrics = await h.wait_for(MetricsOut)
        order = [
            "responding"
            if isinstance(r.output, StateOut) and r.output.state == "responding"
            else type(r.output).__name__
            for r in h.received
            if getattr(r.output, "turn_id", None) == turn.id
        ]
        assert "AudioOut" in order
        assert order.index("responding") < order.index("AudioOut"), order
        first_token, first_audio = metrics.waterfall["first_token"], metrics.waterfall["first_audio_out"]
        assert first_token is not None
        assert first_audio is not None
        assert first_token <= first_audio


async def test_a_spoken_command_is_answered_by_the_hook() -> None:
    llm = FakeLLM()
    pipeline = build(
        "active_monitor",
        stt=FakeSTT(FakeSTT.Config(texts=("stop watching",))),
        llm=llm,
        vad=FakeVAD(),
    )
    pipeline.commands = lambda text: "Stopped watching." if watch_command(text) == ("stop", None) else None
    async with TurnHarness(pipeline) as h:
        await h.speak()
        done = await h.wait_for(ResponseDone)
    assert done.text == "Stopped watching."
    assert llm.calls == 0
    assert [(m.role, m.content, m.modality) for m in pipeline.history] == [
        ("user", "stop watching", "audio"),
        ("assistant", "Stopped watching.", "text"),
    ]


# -- watch_command -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tell me when someone comes in", ("watch", "someone comes in")),
        ("Tell me when someone comes in.", ("watch", "someone comes in")),
        ("let me know if the baby wakes up!", ("watch", "the baby wakes up")),
        ("Let me know as soon as the kettle boils", ("watch", "the kettle boils")),
        ("alert me whenever a car parks outside", ("watch", "a car parks outside")),
        ("notify me once the printer is done", ("watch", "the printer is done")),
        ("warn me if the pot boils over?", ("watch", "the pot boils over")),
        ("watch for a red car", ("watch", "a red car")),
        ("look out for the postman", ("watch", "the postman")),
        ("keep an eye out for deer", ("watch", "deer")),
        ("watch the front door", ("watch", "the front door")),
        ("watch whether the door opens", ("watch", "the door opens")),
        ("Hey Aria, tell me when the cat is on the table", ("watch", "the cat is on the table")),
        ("please, tell me if anyone takes my bike", ("watch", "anyone takes my bike")),
        ("okay watch for smoke", ("watch", "smoke")),
        ("  tell me when it rains  ", ("watch", "it rains")),
        ("stop watching", ("stop", None)),
        ("Stop watching.", ("stop", None)),
        ("please stop monitoring", ("stop", None)),
        ("ok, cancel the watch", ("stop", None)),
        # The wake words that may lead "tell me when ..." may lead "stop watching" too.
        ("Hey Aria, stop watching", ("stop", None)),
        ("Aria, stop watching", ("stop", None)),
        ("now end the watch", ("stop", None)),
        ("keep an eye on the stove", ("watch", "the stove")),
        ("quit watching for the cat", ("stop", None)),
        # Not commands: questions and chat go to the model.
        ("tell me what you see", None),
        ("look at this", None),
        ("what's the weather", None),
        ("what's the weather like tomorrow?", None),
        ("tell me a joke", None),
        ("what do you see?", None),
        ("I watch TV every night", None),
        ("don't stop watching", None),
        ("stop", None),
        ("tell me when it", None),  # too short a condition to watch for
        # "watch" with nothing to watch for, or the exclamation "watch out!", is no command.
        ("watch for", None),
        ("watch out!", None),
        ("watch this", None),
        ("watch me", None),
        ("let me know if it", None),
        ("", None),
    ],
)
def test_watch_command(text: str, expected: tuple[str, str | None] | None) -> None:
    assert watch_command(text) == expected


def test_watch_condition_is_the_persons_words() -> None:
    kind, condition = watch_command("Tell me when THE DOG barks at the mailman...") or ("", None)
    assert (kind, condition) == ("watch", "THE DOG barks at the mailman")


def test_history_messages_from_other_modes_are_kept_across_a_switch() -> None:
    # A switch builds a new pipeline over the session's history: the new mode sees the old turns.
    history = History(
        [Message("user", "hi", mode="voice_chat"), Message("assistant", "Hello.", mode="voice_chat")]
    )
    pipeline = build("deep_dive", llm=FakeLLM(), history=history)
    assert pipeline.history is history
    assert [m.mode for m in pipeline.history] == ["voice_chat", "voice_chat"]
