"""What a file written before a field existed was made with: ``RECORDED_BEFORE``, one table for
every record the project reads back.

A field added to a record (a run's settings, a network's architecture, a classifier's record) gets
an entry here: the value that describes every file made before the field existed, which is what
the code did then, not today's default. So an older model file reads as it was made, and a run
resumed from an older ``config.json`` goes on as it began. ``recorded`` fills a stored record in.
"""

RECORDED_BEFORE = {
    # a run's config.json (``fast.training.config.TrainConfig.from_dict``)
    "run": {"normalise": "dataset", "tta": False, "threshold_rule": "youden", "acquisition": False,
            "crop_area": None, "stem_stride": 1, "stem_kernel": 3, "reframe": 1.0, "cues": False,
            "match_detail": 0.0},
    # a model file's architecture record (``fast.nn.model.Architecture.from_json``)
    "architecture": {"convs_per_block": 1, "batchnorm": False, "head": "flatten", "dropout": 0.0,
                     "stem_stride": 1, "stem_kernel": 3},
    # a model file's metadata (``fast.inference.ModelRecord.from_dict``): before calibration was
    # fitted a file held a plain temperature T, or nothing (T = 1)
    "classifier": {"normalise": "dataset", "test_time_zooms": [1.0], "class_names": ["NORMAL", "PNEUMONIA"],
                   "best_epoch": None, "threshold_rule": None, "held_out": "validation", "calibration": None,
                   "temperature": 1.0},
}


def recorded(kind, values):
    """A record of ``kind`` as stored (``values``), with ``RECORDED_BEFORE[kind]``'s value for
    every field it lacks."""
    return {**RECORDED_BEFORE[kind], **values}
