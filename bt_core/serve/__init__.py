"""The service: what executes and controls runs of the method, the only part of bt_core that
touches the database.

queue.py (launch, cancel, retry, delete; live workers, starting one) and config.py, export.py,
profile.py are torch-free, so the dashboard imports them; runner.py, worker.py and
ray_executor.py execute runs and load the model, so only worker processes and the CLI do.
"""
