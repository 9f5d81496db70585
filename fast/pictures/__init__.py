"""The pictures: every plot the project draws (``plots``, the only place matplotlib is imported)
and the set of them a training run or a model file gets (``drawing``)."""
