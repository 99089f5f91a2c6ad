"""Run the official BEATs code on the fixture inputs on *this* machine; save its outputs.

    python reference_outputs.py REFERENCE_DIR FIXTURES_DIR OUT.pt

A subprocess of tests/models/test_same_machine.py: importing the official classes puts a module named
`torchaudio` (the reference's pure-torch Kaldi module) on sys.path, which must not leak into the test process.
"""

import sys

import torch


def main(reference: str, fixtures: str, out: str) -> None:
    sys.path.insert(0, reference)
    import official  # the reference folder's loader for the official classes
    import torchaudio.compliance.kaldi as ta_kaldi

    torch.set_num_threads(2)
    inputs = torch.load(f"{fixtures}/inputs.pt", weights_only=True)
    model = official.load_checkpoint(f"{fixtures}/beats_tiny.pt")
    finetuned = official.load_checkpoint(f"{fixtures}/beats_tiny_finetuned.pt")
    tokenizer = official.load_tokenizer(f"{fixtures}/tokenizer_tiny.pt")
    res = {}
    with torch.no_grad():
        for name, item in inputs.items():
            src, pm = item["source"], item["padding_mask"]
            res[name] = {
                "fbank_raw": torch.stack([ta_kaldi.fbank(w[None] * 2 ** 15, num_mel_bins=128, sample_frequency=16000,
                                                         frame_length=25, frame_shift=10) for w in src]),
                "preprocess": model.preprocess(src),
                "features": model.extract_features(src, padding_mask=pm)[0],
                "lprobs": finetuned.extract_features(src, padding_mask=pm)[0],
                "labels": tokenizer.extract_labels(src, padding_mask=pm),
            }
    torch.save(res, out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
