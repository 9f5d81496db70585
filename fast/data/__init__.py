"""The images: finding, decoding (DICOM too), patients, splits and folds, normalisation, the
cache on disk, augmentation."""
