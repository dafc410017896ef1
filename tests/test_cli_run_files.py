"""The two files of ``async-dispatch run`` read back, whatever a crash left: PROMPTS as
written in either format, and RESULTS cut at any byte (no event loop: plain files)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from async_dispatch._cli._prompts import parse_prompts
from async_dispatch._cli._results import ResultsFile

#: Prompts as users write them: any text without a line break, not blank.
_PROMPT = st.text(
    st.characters(codec="utf-8", exclude_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
    min_size=1,
    max_size=30,
).filter(lambda text: text.strip() and not text.strip().startswith("{"))


@given(st.lists(_PROMPT, min_size=1, max_size=20), st.lists(st.booleans(), max_size=20))
def test_text_and_json_lines_give_the_same_prompts_at_their_lines(
    prompts: list[str], blanks: list[bool]
) -> None:
    text_lines, json_lines, numbers = [], [], []
    for n, prompt in enumerate(prompts):
        if n < len(blanks) and blanks[n]:
            text_lines.append("   \n")
            json_lines.append("\n")
        text_lines.append(prompt + "\n")
        json_lines.append(json.dumps({"prompt": prompt.strip(), "context": n}) + "\n")
        numbers.append(len(text_lines))
    as_text = parse_prompts(text_lines, name="p")
    as_json = parse_prompts(json_lines, name="p")
    for parsed in (as_text, as_json):
        assert [e.prompt for e in parsed.entries] == [p.strip() for p in prompts]
        assert [e.index for e in parsed.entries] == list(range(len(prompts)))
        assert [e.line for e in parsed.entries] == numbers
    assert [e.context for e in as_json.entries] == list(range(len(prompts)))
    # The fingerprint tells the inputs apart by what they ask, not by how they are written.
    assert as_text.digest == parse_prompts(text_lines, fmt="text", name="p").digest
    assert as_text.digest != as_json.digest  # the contexts differ


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=1, max_value=12), st.data())
def test_results_cut_at_any_byte_read_back_as_their_whole_lines(
    count: int, data: st.DataObject
) -> None:
    """A kill -9 can stop a write anywhere: what is read back is every whole line before
    the cut, and the file is left ending at one, ready for the next line."""
    prompts = parse_prompts([f"/Operator task {n}\n" for n in range(count)], name="p")
    order = data.draw(st.permutations(range(count)))
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "r.jsonl"
        writer = ResultsFile(path)
        writer.open(prompts)
        for index in order:
            entry = prompts.entries[index]
            writer.append(
                {"index": index, "line": entry.line, "kind": "success", "text": "é" * index}
            )
        writer.close()
        full = path.read_bytes()
        cut = data.draw(st.integers(min_value=0, max_value=len(full)))
        path.write_bytes(full[:cut])
        reader = ResultsFile(path)
        reader.open(prompts)
        reader.close()
        kept = full[:cut][: full[:cut].rfind(b"\n") + 1]
        assert path.read_bytes() == kept
        whole = [json.loads(line)["index"] for line in kept.splitlines()]
        assert list(reader.kinds) == whole
        assert reader.cut == (1 if len(kept) < cut else 0)
