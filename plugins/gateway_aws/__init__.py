"""Built-in plugin: the control plane on AWS: ``sqs`` and ``s3`` usage sinks, the ``dynamodb``
usage ledger, the ``s3`` record archive, ``eventbridge`` budget publisher, ``cloudwatch`` metric
publisher, the ``aws_autoscaling`` fleet scaler, and the Lambda handlers (``handlers.py``)."""
