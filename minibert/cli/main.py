"""`minibert` command line: a thin layer over the library. Each subcommand lives in its own module with
`add_arguments(parser)` and `run(args) -> int`, and may name `FIELDS` (its flags' library names, see below).

Exit status: 0 done; 2 bad input (a bad flag, file, checkpoint; a full disk; a run already using the output
folder), always one line on stderr naming the flag, file, key or line at fault, never a traceback; 1 an
unexpected error (one line too, and `minibert -v ...` prints its traceback); 130 interrupted (Ctrl-C)."""

from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import platform
import re
import sys
import traceback
from contextlib import contextmanager
from typing import Iterator

# numpy loads numpy.random on first use, and a Ctrl-C that lands during that import is swallowed by its compiled
# module's initialisation: the command would then run on to the end as if never interrupted (seen in
# prepare-pretraining, which first draws random numbers after it has started building). Loaded here, before any work.
import numpy.random  # noqa: F401

from minibert.plumbing.machine import AUTO, parse_threads, set_threads

# subcommand -> (module under minibert.cli, one-line help)
COMMANDS = {
    "parity": ("parity", "compare minibert with transformers layer by layer on a checkpoint"),
    "embed": ("embed", "sentence embeddings (mean, CLS or pooler) to .npy or JSONL"),
    "fill-mask": ("fill_mask", "top-k predictions for each [MASK] in a text"),
    "explain": ("explain", "follow one input through the model, stage by stage; attention explorer (HTML, PNG)"),
    "finetune": ("finetune", "fine-tune a checkpoint for classification, regression, NER or QA"),
    "predict": ("predict", "labels, tags or answers from a fine-tuned model, as JSON lines"),
    "compare": ("compare", "did pretraining help? fine-tune it and random init alike over seeds, with the margin"),
    "train-tokenizer": ("train_tokenizer", "learn a WordPiece vocabulary from a corpus"),
    "prepare-pretraining": ("prepare_pretraining", "turn a corpus into masked-LM/NSP examples on disk"),
    "pretrain": ("pretrain", "pretrain BERT from raw text (masked LM + next-sentence prediction)"),
    "export": ("export", "write a checkpoint as an ONNX graph for ONNX Runtime, checked against minibert"),
}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with where to find the usage) rather than the usage and then
    the error, and a mistyped flag or command gets the closest ones suggested."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}{did_you_mean(message, self)} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        """Unknown flags are reported against the subcommand's own flags (argparse reports them from the top
        level, which does not know them)."""
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            command = getattr(parsed, "parser", self)
            command.error(f"unrecognized arguments: {' '.join(unknown)}")
        return parsed


def did_you_mean(message: str, parser: argparse.ArgumentParser) -> str:
    """" (did you mean --lr?)" for an unknown flag or an invalid choice close to a known one, else ""."""
    unknown = re.match(r"unrecognized arguments: (\S+)", message)
    choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if unknown and unknown.group(1).startswith("-"):
        typed = unknown.group(1).split("=")[0]
        known = {option: action.dest for action in parser._actions for option in action.option_strings}
    elif choice:
        typed = choice.group(1)
        known = {name: name for name in re.findall(r"[\w-]+", choice.group(2))}
    else:
        return ""
    # - and _ compare alike; one suggestion per setting (--learning-rate and --learning_rate are one flag).
    normal: dict[str, str] = {}
    for option in known:  # of two spellings of one flag, the one that separates words as the user did
        key = option.replace("_", "-")
        if key not in normal or ("_" in option) == ("_" in typed):
            normal[key] = option
    suggestions: dict[str, str] = {}
    for match in difflib.get_close_matches(typed.replace("_", "-"), list(normal), n=5, cutoff=0.75):
        suggestions.setdefault(known[normal[match]], normal[match])
    shown = list(suggestions.values())[:3]
    return f" (did you mean {' or '.join(shown)}?)" if shown else ""


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option's help shows its default: appended when the help text does not already say it. Options
    whose default is None (computed, or a library default) say theirs in words, which a test checks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default is None or action.default is argparse.SUPPRESS
                or isinstance(action.default, bool) or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def threads_flag(text: str) -> int | str:
    try:
        return parse_threads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or {AUTO}, got {text!r}") from None


def build_parser() -> Parser:
    parser = Parser(prog="minibert", description="BERT from scratch in plain PyTorch.",
                    formatter_class=DefaultsHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log loading details, and print the traceback of an unexpected error")
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"minibert.cli.{module_name}")
        command = sub.add_parser(name, help=help_text, description=help_text, formatter_class=DefaultsHelpFormatter)
        module.add_arguments(command)
        command.add_argument("--threads", type=threads_flag, default=AUTO, metavar="N|auto",
                             help="torch threads (default auto: the cores other processes leave free; -v says "
                                  "how many)")
        command.set_defaults(run=module.run, parser=command, fields=getattr(module, "FIELDS", {}))
    return parser


def version_line() -> str:
    from minibert import __version__
    import torch
    return f"minibert {__version__} (torch {torch.__version__}, Python {platform.python_version()})"


def flag_spelling(command: argparse.ArgumentParser, fields: dict[str, str], argv: list[str] = ()) -> dict[str, str]:
    """Library name -> flag, for error messages (minibert.errors.spelled): each option's dest (e.g. max_length ->
    --max-length) and the library fields the command passes it to (`fields`, dest -> field, e.g. batch_size ->
    per_device_batch_size). A flag typed in `argv` under another spelling (an alias such as --learning_rate) is
    named as typed."""
    flags = {action.dest: max(action.option_strings, key=len) for action in command._actions
             if action.option_strings and action.dest != "help" and action.help != argparse.SUPPRESS}
    for token in argv:
        typed = token.split("=")[0]
        action = command._option_string_actions.get(typed)
        if action is not None and typed.startswith("--"):
            flags[action.dest] = typed
    return {**flags, **{field: flags[dest] for dest, field in fields.items() if dest in flags}}


def describe(error: BaseException) -> str | None:
    """The one line for an error a user can act on, or None for an unexpected one."""
    from minibert.errors import MinibertError
    if isinstance(error, MinibertError):
        return " ".join(str(error).split())
    if isinstance(error, OSError) and error.strerror:
        reason = error.strerror[0].lower() + error.strerror[1:]
        where = error.filename if error.filename is not None else "output"
        return f"{where}: {reason}" + (f" ({error.filename2})" if error.filename2 else "")
    return None


@contextmanager
def log_to_stderr(verbose: bool) -> Iterator[None]:
    """minibert's log lines (warnings; with -v also info) on the stderr of this call, one line each."""
    logger = logging.getLogger("minibert")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False  # not twice, when the caller (a notebook, pytest) has its own handlers
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def main(argv: list[str] | None = None) -> int:
    from minibert.errors import spelling
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help or --version (0), or a bad flag (2, its line printed)
        return done.code if isinstance(done.code, int) else 0
    prefix = f"minibert {args.command}"
    try:
        with spelling(flag_spelling(args.parser, args.fields, argv)), log_to_stderr(args.verbose):
            logging.getLogger("minibert").info(set_threads(args.threads).line())
            return args.run(args)
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted; outputs written before are left as they were", file=sys.stderr)
        return 130
    except Exception as error:
        line = describe(error)
        if line is not None:
            print(f"{prefix}: error: {line}", file=sys.stderr)
            return 2
        if args.verbose:
            traceback.print_exc()
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"{prefix}: error: unexpected {type(error).__name__}{': ' + first if first else ''} "
              f"(a bug? rerun with `minibert -v {args.command} ...` for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
