"""The batch data path of a worker: opportunities and outcomes in whole fetches, inside the
Faust app and following its consumer group (``source.py``), through scoring, the outcome join
and learning (``process.py``)."""
