"""The pipeline around the stages: the config and its checks, the plan of jobs and their paths, the stage
functions the workflow and the ``lfa`` command call, the cost estimate, a run's status, the layout migration."""
