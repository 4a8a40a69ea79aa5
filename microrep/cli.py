"""The `microrep` command: a table of commands -> (settings, stage function, printer).

Each command's flags come from its settings dataclass; its stage function (in
microrep.commands, or a data function) takes the filled settings and returns
plain data, which the printer turns into lines. Only this module prints for
humans and chooses exit codes: a MicrorepError becomes one line on stderr and
exit code 2; Ctrl-C exits with 130.
"""

import argparse
import dataclasses
import difflib
import errno
import os
import signal
import sys
import threading

from microrep._version import __version__
from microrep.backend import import_backend_quietly, quiet_logs

DESCRIPTION = """Learned microstructure representations: a Siamese VGG16 trained under
contrastive loss on pairs of micrographs (Sardeshmukh et al., MRS Communications),
with PCA and SVM analysis of the embeddings."""

EXAMPLES = """examples:
  microrep demo                                  # everything, on synthetic data, in minutes
  microrep generate --out microrep-data/synthetic
  microrep train --data folder --data-dir microrep-data/synthetic --input-size 64 \\
                 --weights none --epochs 5 --out runs/train
  microrep embed --model-path runs/train --data folder --data-dir microrep-data/synthetic
  microrep evaluate --embeddings runs/embeddings --out runs/evaluation
  microrep search --index runs/embeddings --query new_micrograph.png --k 10
  microrep explore runs/embeddings --out explorer.html
  microrep export --model-path runs/train --out runs/export
  microrep fetch uhcsdb --dest microrep-data/uhcsdb
  microrep train --data uhcsdb --data-dir microrep-data/uhcsdb --task 3phase --weights imagenet
"""


#: Commands that load Keras (to build or run a model, or through the embeddings archive).
MODEL_COMMANDS = {"train", "embed", "export", "demo", "reproduce", "search", "evaluate", "explore",
                  "status", "index", "predict"}


#: What Ctrl-C leaves behind, per command.
INTERRUPTED = {
    "train": "VGG16 features computed so far stay in --feature-cache (unless it is empty) and "
             "completed epochs in --out; the same command with --resume computes only what is missing",
    "reproduce": "finished folds are kept; run the same command again to continue",
    "": "files are written whole or not at all, so nothing half-written was left; run it again",
}


class IncompleteArchive(Exception):
    """`microrep status` of an archive with parts still to do: exit code 3 (already printed)."""

    exit_code = 3


def print_demo(metrics, config):
    split = metrics["split"]
    print(f"\nlinear SVM fitted on the {split['training_images']} training micrographs, scored on "
          f"the {split['unseen_images']} micrographs of samples the training never saw:")
    for name, result in metrics["methods"].items():
        heldout = result["heldout"]
        print(f"  {name:18s} {heldout['accuracy_mean']:.1%} (balanced {heldout['balanced_accuracy']:.1%})")
    print(f"\nreport: {os.path.join(config.out, 'report.md')}")


def print_trained(result, config):
    if result.already_complete:
        print(f"{result.run_dir} already completed {result.epochs_completed} epochs: the "
              "run is already complete, nothing changed (raise --epochs to train further)")
        return
    print(f"trained {result.epochs_completed} epoch(s) on {result.devices} device(s); "
          f"tower: {result.run_dir / 'tower.keras'}")


def print_embedded(result, config):
    status = result["status"]
    what = "pretrained VGG16 features" if config.pretrained else "embeddings"
    if result["launcher"] != "local":
        print(result["message"])
    else:
        done_before = f"; {len(result['skipped'])} already done" if result["skipped"] else ""
        print(f"embedded {len(result['embedded'])} part(s) of {what}{done_before}")
        if result["bad"]:
            print(f"note: {result['bad']} image(s) could not be read; recorded as bad in their "
                  f"part (status, reason) and left out of analysis: {', '.join(result['bad_images'])}"
                  + (", ..." if result["bad"] > len(result["bad_images"]) else ""))
    print_status(status, config.out)


def print_status(status, archive):
    from microrep.config.fields import ranges_text

    print(f"{archive}: {len(status.done)} of {status.parts} part(s) done "
          f"({status.rows} images listed; {status.bad_rows} bad in done parts)")
    if status.missing:
        print(f"  missing: {ranges_text(status.missing)} (run the same `microrep embed` again)")
    for part, why in status.inconsistent.items():
        print(f"  part {part}: {why}")


def archive_status(config):
    from microrep.embedding.parts import archive_status as status_of

    status = status_of(config.archive, verify=config.verify)
    print_status(status, config.archive)
    if not status.complete:
        raise IncompleteArchive(f"{config.archive} is incomplete")
    return status


def print_evaluation(metrics, config):
    if metrics.get("mode") == "targets":
        from microrep.commands.predict import target_line

        for name, by_role in metrics["targets"].items():
            print(target_line(name, by_role))
        print(f"metrics.json, predictions_<target>.csv and parity plots in {config.out}")
        return
    for note in metrics["notes"]:
        print(f"note: {note}")
    if config.test_embeddings:
        accuracy, retrieval = metrics["accuracy"], metrics["retrieval"]["all"]
        balanced = {kernel: result["balanced_accuracy"] for kernel, result in metrics["heldout"].items()}
        print(f"held-out accuracy (fit on {metrics['n_fit']}, tested on {metrics['n_test']} images): "
              f"linear SVM {accuracy['linear']:.1%} (balanced {balanced['linear']:.1%}), "
              f"RBF SVM {accuracy['rbf']:.1%} (balanced {balanced['rbf']:.1%})")
        print(f"retrieval of test images among the fit set: P@1 {retrieval['precision_at_1']:.1%}, "
              f"R-Precision {retrieval['r_precision']:.1%}, MAP@R {retrieval['map_at_r']:.1%}")
        print(f"metrics.json and confusion.png in {config.out}")
        return
    summary, retrieval = metrics["stratified"], metrics["retrieval"]["all"]
    print(f"SVM accuracy: {summary['accuracy_mean']:.1%} ± {summary['accuracy_std']:.1%}, "
          f"balanced {summary['balanced_accuracy']:.1%} ({config.folds}-fold stratified CV); "
          "recall per class: " + ", ".join(f"{name} {value:.0%}" for name, value in
                                          summary["recall"].items()))
    grouped = metrics.get("grouped")
    if grouped:
        print(f"grouped by sample (no sample on both sides of a split): {grouped['accuracy_mean']:.1%} "
              f"± {grouped['accuracy_std']:.1%}, balanced {grouped['balanced_accuracy']:.1%}")
    elif metrics.get("grouped_note"):
        print(f"note: {metrics['grouped_note']}")
    print(f"retrieval among themselves: P@1 "
          f"{retrieval['precision_at_1']:.1%}, MAP@R {retrieval['map_at_r']:.1%}; figures and "
          f"metrics.json in {config.out}")


def print_reproduced(table, config):
    print(table[["task", "cv", "pca", "paper_siamese", "paper_decost", "pretrained_mean",
                 "vlad_block4_mean", "vlad_block5_mean", "siamese_mean"]].to_string(
        index=False, na_rep="-", float_format=lambda v: f"{v:.1%}"))


def print_fetched(summary, config):
    for warning in summary["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"UHCSDB in {summary['dest']}: {summary['labelled_found']} labelled micrographs "
          f"({summary['labelled_missing']} listed without an image); SHA-256 in manifest.json")
    print(f"use it with: --data uhcsdb --data-dir {summary['dest']}")


def print_exported(paths, config):
    print(f"SavedModel: {paths[0]}\nKeras file: {paths[1]}")


def say(line):
    print(line, flush=True)


def generate(config, out):
    from microrep.data.synthetic import write_synthetic_dataset

    table = write_synthetic_dataset(out, config)
    print(f"wrote {len(table)} micrographs to {out}")


def stage(module, function, **kwargs):
    """The stage function `module.function`, imported when its command runs (Keras is slow to load)."""
    def run(config):
        import importlib

        return getattr(importlib.import_module(module), function)(config, **kwargs)

    return run


def export(config):
    from microrep.commands.export import export_tower
    from microrep.training import load_tower
    from microrep.training.embedder import embedding_view

    tower = load_tower(config.model_path)
    return export_tower(tower, config.out, embedding_view(config, tower))


def settings(name):
    """The settings dataclass of a command (microrep.config, or the generator's own)."""
    import microrep.config

    if name == "SyntheticConfig":
        from microrep.data.synthetic import SyntheticConfig

        return SyntheticConfig
    return getattr(microrep.config, name)


#: command -> (help, settings class name, stage function of the settings, printer of its result)
COMMANDS = {
    "demo": ("run every stage on freshly generated synthetic micrographs", "DemoConfig",
             stage("microrep.commands.demo", "run_demo"), print_demo),
    "generate": ("write a synthetic micrograph dataset folder", "SyntheticConfig", None, None),
    "train": ("train the Siamese model under contrastive loss", "TrainConfig",
              stage("microrep.commands.train", "run_train", log=say), print_trained),
    "embed": ("embed micrographs with a trained tower", "EmbedConfig",
              stage("microrep.commands.embed", "run_embed_stage", log=say), print_embedded),
    "status": ("which parts of an embedded archive are done, missing or inconsistent (exit "
               "code 3 while it is incomplete)", "StatusConfig", archive_status, None),
    "index": ("a persistent faiss index of an embedded archive (exact, IVF-Flat or IVF-PQ), "
              "with its recall@10 measured at build time", "IndexConfig",
              stage("microrep.commands.index", "run_index", log=say), None),
    "evaluate": ("PCA and SVM cross-validation of embeddings", "EvalConfig",
                 stage("microrep.commands.evaluate", "evaluate_embeddings"), print_evaluation),
    "predict": ("predict metadata targets (anneal temperature, time, cooling, any column) of new "
                "micrographs with 90 per cent intervals, from a predictor fitted on embeddings",
                "PredictConfig", stage("microrep.commands.predict", "run_predict", log=say), None),
    "search": ("find the micrographs of an embedded archive nearest to query images",
               "SearchConfig", stage("microrep.commands.search", "run_search"), None),
    "explore": ("an offline interactive map of embedded micrographs (one HTML file; thumbnails "
                "on hover, neighbours on click), or TensorBoard's projector", "ExploreConfig",
                stage("microrep.commands.explore", "write_explorer"), None),
    "export": ("export the tower as a SavedModel and a .keras file", "ExportConfig", export,
               print_exported),
    "reproduce": ("redo the paper: baseline and Siamese on every task, both CV flavours, PCA "
                  "interpretation, results table", "ReproduceConfig",
                  stage("microrep.commands.reproduce", "reproduce"), print_reproduced),
    "fetch": ("download UHCSDB (NIST MDR 11256/940), verify and unpack it", "FetchConfig",
              stage("microrep.data.fetch", "fetch_uhcsdb"), print_fetched),
}


def build_parser():
    from microrep.config import add_config_flags

    parser = argparse.ArgumentParser(
        prog="microrep", description=DESCRIPTION, epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"microrep {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    subs = {}
    for name, (help_text, config_name, _, _) in COMMANDS.items():
        subs[name] = commands.add_parser(name, help=help_text, description=help_text)
        add_config_flags(subs[name], settings(config_name))
        subs[name].set_defaults(config_class=settings(config_name))
    subs["generate"].add_argument("--out", default="microrep-data/synthetic", help="dataset folder to write")
    subs["explore"].add_argument("embeddings_dir", nargs="*", metavar="EMB_DIR",
                                 help="folders written by `microrep embed` (or --embeddings)")
    subs["index"].add_argument("embeddings_dir", nargs="?", metavar="EMBEDDINGS",
                               help="the archive folder (or --embeddings)")
    subs["status"].add_argument("archive_dir", nargs="?", metavar="ARCHIVE",
                                help="the archive folder (or --archive)")
    subs["fetch"].add_argument("dataset", choices=["uhcsdb"], help="the dataset to fetch")
    parser.commands = subs
    return parser


def refuse_unknown(command_parser, extras):
    """The command's own usage and 'did you mean --data-dir?' for a mistyped flag; exits 2."""
    known = list(command_parser._option_string_actions)
    guesses = [difflib.get_close_matches(word.split("=")[0], known, n=1, cutoff=0.6)
               for word in extras if word.startswith("-")]
    hint = "; ".join(f"did you mean {guess[0]}?" for guess in guesses if guess)
    command_parser.error(f"unrecognized arguments: {' '.join(extras)}" + (f" ({hint})" if hint else ""))


def run_command(args):
    from microrep.config import config_from_args

    config = config_from_args(args.config_class, args)
    if args.command == "generate":
        return generate(config, args.out)
    if args.command == "explore" and args.embeddings_dir:
        config = dataclasses.replace(config, embeddings=",".join(args.embeddings_dir))
    if args.command == "index" and args.embeddings_dir:
        config = dataclasses.replace(config, embeddings=args.embeddings_dir)
    if args.command == "status" and args.archive_dir:
        config = dataclasses.replace(config, archive=args.archive_dir)
    _, _, run, show = COMMANDS[args.command]
    result = run(config)
    if show is not None:
        show(result, config)


#: errno values that mean the output cannot be written: the user's to fix, not a bug.
UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def internal_error(command, error):
    """A bug, not bad input: one line, the traceback on request (MICROREP_DEBUG=1)."""
    if os.environ.get("MICROREP_DEBUG"):
        raise error
    print(f"microrep {command}: internal error: {type(error).__name__}: {error}\n"
          "  (set MICROREP_DEBUG=1 to see the traceback, and please report it)", file=sys.stderr)
    return 1


def main(argv=None):
    quiet_logs()
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C interrupts, however the process was started: a shell's background job
        # starts with SIGINT ignored, and Python would keep it ignored
        signal.signal(signal.SIGINT, signal.default_int_handler)
    words = sys.argv[1:] if argv is None else argv
    if words and words[0] in MODEL_COMMANDS:
        # before parsing: settings naming a registered part (a loss, a head) load Keras
        import_backend_quietly()
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        refuse_unknown(parser.commands[args.command], extras)
    from microrep.errors import MicrorepError

    try:
        run_command(args)
    except IncompleteArchive:
        return IncompleteArchive.exit_code
    except MicrorepError as error:
        print(f"microrep {args.command}: error: {error}", file=sys.stderr)
        if getattr(error, "exit_now", False):  # e.g. a lost training peer: nothing to wait for
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(error.exit_code)
        return error.exit_code
    except OSError as error:
        if error.errno not in UNWRITABLE:
            return internal_error(args.command, error)
        print(f"microrep {args.command}: error: cannot write {error.filename or 'the output'}: "
              f"{error.strerror}; choose another --out (or free space); earlier outputs are intact",
              file=sys.stderr)
        return 2
    except Exception as error:  # a bug, not bad input: one line, traceback on request
        return internal_error(args.command, error)
    except KeyboardInterrupt:
        print(f"\nmicrorep {args.command}: interrupted; {INTERRUPTED.get(args.command, INTERRUPTED[''])}",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
