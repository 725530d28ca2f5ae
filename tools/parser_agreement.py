"""How often hsd.parsing reads the answer written in old-pipeline responses, and how often it raises.

    PYTHONPATH=$PWD python3 tools/parser_agreement.py ../shared/reference/recorded_runs/*/intermediate_results_*.jsonl

To compare with an older parser, extract that commit's package and point PYTHONPATH at it:
``git archive REV hsd | tar -x -C /tmp/old && PYTHONPATH=/tmp/old python3 tools/parser_agreement.py …``.

The written answer is found independently of hsd.parsing, on purpose with a different method: the
last ``"classification": "<label>"`` (quotes escaped or not, or ``classification: <label>``) after
the last occurrence of ``final`` in the response, or anywhere in a response that does not begin
with reasoning (``analysis``). Agreement = parser label equals that label, over the rows that have one.

``--rewrap`` builds a *constructed* post-fine-tuning set instead: every response's final JSON answer,
alone, re-written in turn in each broken-frame shape of issue 13 (junk before ``final{``, ``name{``,
nested under ``final`` as a string, doubled braces, plain key/value text). It measures the parser on
those shapes; it is not a real model's output.

``--reshape`` builds the post-fine-tuning shapes of issue 27 from every recorded response instead: its
own reasoning (which names a label) kept, then the final channel's name with its role and tokens
stripped and junk before the answer (``final{``, ``final"{``, ``final]{``, a code fence, ``json``), then
the recorded final answer in turn as JSON, as the string value of a ``message`` key (quotes unescaped,
or escaped), as a JSON string, or as ``LABEL: …`` / ``RATIONALE: …`` text. The truth is the label of the
recorded final JSON (an oracle that does not depend on how hsd.parsing finds answers).
"""

from __future__ import annotations

import collections
import json
import re
import sys

from hsd.parsing import parse_response

_WRITTEN = re.compile(r"classification\W{0,6}(hate|normal)\b", re.I)


def written_answer(raw: str) -> str | None:
    cut = raw.lower().rfind("final")
    if cut < 0 and re.match(r"\W{0,4}analysis", raw):
        return None  # reasoning with no final answer
    found = _WRITTEN.findall(raw[max(cut, 0):])
    return found[-1].lower() if found else None


SHAPES = (
    lambda a: f'",final{a}', lambda a: f'",name{a}', lambda a: f"#final{a}", lambda a: f"-final{a}",
    lambda a: f"1final{a}", lambda a: f'",=final{a}', lambda a: f'"}}final{a}', lambda a: f"\ufffdfinal{a}",
    lambda a: '{"final": "' + a.replace('"', '\\"').replace('\\"classification\\"', '"classification"', 1) + '"}',
    lambda a: f"{{{a}}}",
    lambda a: "Classification: {classification}\nRationale: {rationale}".format(**json.loads(a)),
)


JOINS = ("final", 'final"', "final]", "final\n\n```json", "final\n\n```json\n", ".final", "final json", '"final"',
         "final\n", "assistantfinal\n\n```json", 'assistantfinal"', " final")
ANSWERS = (
    lambda a: json.dumps(a),
    lambda a: '{"message": "' + json.dumps(a) + '"}',
    lambda a: json.dumps({"message": json.dumps(a)}),
    lambda a: json.dumps(json.dumps(a)),
    lambda a: f"LABEL: {a['classification'].upper()}\nRATIONALE: {a['rationale']}",
    lambda a: f"```json\n{json.dumps(a)}\n```",
)


def reshaped(raw: str, k: int) -> tuple[str, str] | None:
    """(response, true label): the recorded reasoning, a stripped final-channel name with junk, the
    recorded answer in answer shape number k; None without a recorded final answer."""
    if "assistantfinal" not in raw:
        return None
    reasoning, tail = raw.rsplit("assistantfinal", 1)
    try:
        answer = json.loads(tail[tail.index("{"): tail.rindex("}") + 1])
    except ValueError:
        return None
    join, shape = JOINS[k % len(JOINS)], ANSWERS[(k // len(JOINS)) % len(ANSWERS)]
    if join.startswith(" ") and not shape(answer).endswith("}"):
        join = join.lstrip()  # "… final" after a space is prose unless an object ends the response
    return reasoning.rstrip(" ") + join + shape(answer), str(answer["classification"]).lower()


def rewrapped(raw: str, k: int) -> str | None:
    """The response's final JSON answer in broken-frame shape number k (None without an answer)."""
    if "assistantfinal" not in raw:
        return None
    tail = raw.rsplit("assistantfinal", 1)[1]
    try:
        answer = json.dumps(json.loads(tail[tail.index("{"): tail.rindex("}") + 1]))
    except ValueError:
        return None
    return SHAPES[k % len(SHAPES)](answer)


def main(paths: list[str], rewrap: bool = False, reshape: bool = False) -> None:
    rows = raised = agree = 0
    misses: collections.Counter[str] = collections.Counter()
    with_answer = 0
    for path in paths:
        for line in open(path, encoding="utf-8"):
            if not line.strip():
                continue
            raw = json.loads(line).get("raw_response") or ""
            truth = written_answer(raw)
            if rewrap:
                raw = rewrapped(raw, rows) or raw
                truth = written_answer(raw)
            if reshape:
                raw, truth = reshaped(raw, rows) or (raw, None)
            rows += 1
            with_answer += truth is not None
            try:
                result = parse_response(raw)
            except Exception as exc:  # noqa: BLE001 - counted: the point of the tool
                raised += 1
                misses[f"raised {type(exc).__name__}"] += truth is not None
                continue
            if truth is not None and result.label == truth:
                agree += 1
            elif truth is not None:
                misses[result.status] += 1
    share = f"{agree / with_answer:.1%}" if with_answer else "n/a"
    print(f"rows {rows}; with a written answer {with_answer}; parser agrees on {agree} ({share}); raised {raised}")
    for status, n in misses.most_common():
        print(f"  missed: {status} {n}")


if __name__ == "__main__":
    args = sys.argv[1:]
    main([a for a in args if a not in ("--rewrap", "--reshape")], rewrap="--rewrap" in args, reshape="--reshape" in args)
