"""Teaching figures and worked numbers: every CNN idea of the learning path (docs/learn/) computed and
drawn, one module per topic (``conv`` convolution and pooling, ``numbers`` parameters/softmax/batch
norm, ``rf`` receptive fields, ``activations``, ``optim``/``adam``/``optim_engine`` optimisers,
``schedules``, ``initialisation``, ``backprop``, ``arch`` architectures, ``norms``, ``metrics``,
``transfer``), sharing :mod:`cnnlab.teach.base`. ``cnnlab teach TOPIC`` prints them and writes the
PNG + JSON. They sit beside ``viz`` (which draws a run's plots) and may use the engine, the model zoo
and the NumPy engine; nothing below imports them.
"""
