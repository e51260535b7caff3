"""Turns Kaggle-layout ultrasound data into the model/ artifact: data, split, augmentation, fit, evaluation."""
