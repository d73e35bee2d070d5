"""How much input imageprep accepts, in one place (documented in README, "Limits").

Each bound turns a hostile or broken input that would hang, eat memory or crash the
parser into a one-line error naming the file (and line) instead.
"""

from __future__ import annotations

#: Largest profile, playbook or --var-file read (the biggest built-in profile is ~38 KB).
MAX_YAML_BYTES = 1 << 20
#: Largest script a step's run_file names (the longest built-in script is ~4 KB).
MAX_SCRIPT_BYTES = 256 << 10
#: Deepest nesting of mappings and lists in a YAML file or a journal line (profiles use ~8).
MAX_DEPTH = 50
#: Most values a YAML document may hold once its aliases are expanded (billion laughs).
MAX_YAML_VALUES = 100_000
#: Longest integer literal, in characters (Python refuses to parse more than 4300 digits).
MAX_INT_CHARS = 100
#: Longest `when:` condition, in characters.
MAX_EXPRESSION_CHARS = 2000
#: Largest journal.jsonl --resume reads.
MAX_JOURNAL_BYTES = 64 << 20
#: Largest file a journal records by path (profile and playbook files, hashed on resume).
MAX_RECORDED_FILE_BYTES = MAX_YAML_BYTES
