"""Response lengths of real gpt-oss-20b answers, in tokens: what the benchmark's workload cases draw from.

Derived once (not read at run time: benchmark machines have no ``../shared``) from the
``raw_response`` of all 253 records of the old pipeline's recorded run
``../shared/reference/recorded_runs/baseline_std_20251025_175009/intermediate_results_*.jsonl``
(gpt-oss-20b, baseline_standard prompt; the only recorded run there): each response tokenized with
gpt-oss's o200k_harmony tokenizer, plus 7 for the harmony markers the recorded text lost
(``<|channel|>``, ``<|message|>``, ``<|end|>``, ``<|start|>``, ``<|channel|>``, ``<|message|>``,
``<|return|>``; the words analysis/assistant/final are in the text). Characters per token:
4.86. In tokens: median 106, p10 72, p90 178, max 518, mean 120.3.
"""

RESPONSE_TOKENS: tuple[int, ...] = (
    89, 92, 217, 119, 114, 101, 114, 82, 145, 103, 107, 120, 98, 111, 132, 78, 105, 117, 114, 351,
    142, 109, 95, 84, 106, 113, 75, 79, 138, 99, 97, 401, 518, 126, 102, 220, 110, 75, 214, 116,
    117, 99, 105, 88, 66, 87, 115, 88, 82, 78, 149, 236, 117, 95, 80, 75, 76, 69, 105, 113,
    77, 102, 87, 144, 68, 78, 90, 67, 116, 247, 102, 121, 91, 64, 50, 233, 155, 209, 86, 95,
    68, 103, 255, 117, 66, 170, 233, 122, 151, 143, 123, 68, 424, 112, 118, 300, 249, 153, 83, 216,
    67, 106, 174, 78, 72, 155, 119, 119, 90, 64, 96, 208, 126, 202, 70, 168, 87, 112, 112, 98,
    198, 103, 108, 115, 84, 76, 107, 105, 93, 73, 61, 71, 120, 79, 75, 128, 84, 134, 112, 164,
    69, 224, 170, 70, 105, 129, 82, 189, 57, 99, 75, 105, 115, 71, 71, 174, 89, 86, 94, 152,
    130, 100, 121, 132, 98, 92, 107, 178, 163, 111, 71, 99, 168, 107, 141, 80, 120, 81, 74, 112,
    94, 88, 124, 90, 125, 90, 99, 77, 106, 111, 66, 154, 112, 56, 165, 189, 96, 110, 89, 149,
    91, 170, 127, 129, 174, 91, 99, 89, 100, 120, 86, 122, 138, 106, 109, 87, 137, 83, 156, 160,
    137, 91, 74, 89, 95, 178, 79, 90, 116, 69, 215, 87, 83, 118, 106, 115, 89, 110, 163, 75,
    95, 95, 84, 105, 85, 173, 72, 114, 71, 316, 65, 129, 249,
)
