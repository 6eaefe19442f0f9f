"""``spiketime data``: inspect event files, make the built-in sets, encode audio, fetch real datasets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from spiketime.app.config import ConfigError
from spiketime.app.rundir import check_out_dir, check_out_file


def cmd_data(args: argparse.Namespace) -> int:

    from spiketime.data.registry import data_home

    c = args.data_command
    if c == "inspect":
        from spiketime.data.formats import inspect

        print(json.dumps(inspect(args.path), indent=2))
    elif c == "speech-digits":
        from spiketime.data.speech_digits import make_speech_digits

        size = int(args.size) if str(args.size).isdigit() else args.size
        out = Path(args.out) if args.out else data_home() / "speech_digits"
        check_out_dir(out)
        train, test = make_speech_digits(out, seed=args.seed, jobs=args.jobs, size=size, progress=not args.quiet)
        print(f"-> {train}, {test}")
    elif c == "event-digits":
        from spiketime.data.event_digits import make_event_digits

        out = Path(args.out) if args.out else data_home() / "event_digits"
        check_out_dir(out)
        if args.repeats < 1:
            raise ConfigError(f"--repeats {args.repeats}: expected an integer >= 1")
        made = make_event_digits(out, seed=args.seed, repeats=args.repeats, jobs=args.jobs, progress=not args.quiet)
        print(f"-> {made}")
    elif c == "audio-to-spikes":
        from spiketime.data.speech_digits import audio_to_spikes, read_labels_csv, unlisted_wavs

        check_out_file(args.out)  # before the encoding work
        skipped = unlisted_wavs(Path(args.wav_dir), read_labels_csv(Path(args.labels), Path(args.wav_dir)))
        if skipped:
            print(
                f"spiketime: {len(skipped)} WAV file(s) in {args.wav_dir} are not in {args.labels} and are "
                f"skipped (first: {skipped[0]})",
                file=sys.stderr,
            )
        made = audio_to_spikes(
            Path(args.wav_dir), Path(args.labels), Path(args.out), jobs=args.jobs, progress=not args.quiet
        )
        print(f"-> {made}")
    else:
        from spiketime.data.registry import ensure_dataset

        print(f"-> {ensure_dataset(args.name, Path(args.path) if args.path else None)}")
    return 0
