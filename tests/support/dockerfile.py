"""A Dockerfile read into stages and instructions, for tests that check what an image would do
without a container engine (none can pull a base image here).

Only what the project's Dockerfile uses is understood: comments, line continuations, ``FROM ...
AS name``, exec-form (JSON) ``ENTRYPOINT``/``CMD``, and ``ENV``/``ARG``/``LABEL`` as
``key=value`` pairs.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    """One instruction: its keyword (upper case) and its argument text, continuations joined."""

    keyword: str
    text: str

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form ``ENTRYPOINT``/``CMD``/``RUN``.

        Raises:
            ValueError: the instruction is in shell form.
        """
        value = json.loads(self.text)
        if not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
            raise ValueError(f"{self.keyword} is not in exec form: {self.text}")
        return value

    def pairs(self) -> dict[str, str]:
        """The ``key=value`` pairs of an ``ENV``, ``ARG`` or ``LABEL`` (a bare ``ARG`` name maps
        to an empty string)."""
        out: dict[str, str] = {}
        for word in shlex.split(self.text):
            key, _, value = word.partition("=")
            out[key] = value
        return out


@dataclass
class Stage:
    """A build stage: its base, its name, its instructions after ``FROM``."""

    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        """The stage's instructions with this keyword, in order."""
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        """The stage's last instruction with this keyword (the one that takes effect).

        Raises:
            LookupError: the stage has none.
        """
        found = self.all(keyword)
        if not found:
            raise LookupError(f"stage {self.name} has no {keyword}")
        return found[-1]

    def env(self) -> dict[str, str]:
        """The stage's ``ENV`` values, later ones winning, ``$NAME`` of earlier ones expanded
        (``$PATH`` is left for the caller's own)."""
        out: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for key, value in instruction.pairs().items():
                for name, known in out.items():
                    value = value.replace(f"${name}", known)
                out[key] = value
        return out


@dataclass
class Dockerfile:
    """The file's global ``ARG``s (before the first ``FROM``) and its stages, in order."""

    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        """The stage called ``name``.

        Raises:
            LookupError: no stage has that name.
        """
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise LookupError(f"no stage named {name}")


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue  # comments and blank lines may sit inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def parse_dockerfile(path: Path) -> Dockerfile:
    """Read ``path`` into its global arguments and stages.

    Raises:
        ValueError: an instruction comes before the first ``FROM`` other than ``ARG``.
    """
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        instruction = Instruction(keyword.upper(), rest.strip())
        if instruction.keyword == "FROM":
            words = instruction.text.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(base=words[0], name=name))
        elif stages:
            stages[-1].instructions.append(instruction)
        elif instruction.keyword == "ARG":
            global_args.update(instruction.pairs())
        else:
            raise ValueError(f"{path}: {keyword} before the first FROM")
    return Dockerfile(global_args, stages)
