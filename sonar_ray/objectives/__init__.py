"""Pre-training objectives: masked-token prediction, tokenizers and their training, SONAR losses.

masking.py            MAE-style random patch masking that respects padding
predictor.py          LabelPredictor: small transformer from visible encodings to code logits (growable)
masked_prediction.py  MaskedTokenModel: BEATs student + predictor, CE on masked patches, diagnostics
random_projection.py  frozen random-projection tokenizer (BEATs iteration 1)
tokenizer_training.py EMA vector quantizer + feature estimator to train the BEATs tokenizer
distill.py            self-distillation losses (token and feature level)
codebook.py           online clustered codebook: re-anchor dead codes, grow the codebook
"""
