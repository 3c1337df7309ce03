"""Torch training code (model, pretraining, engine, chat, RL); filled in by the training issues."""
