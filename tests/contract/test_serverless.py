"""serverless.yml packages offline, and its CloudFormation template declares exactly the
functions, events, resources and least-privilege IAM the control plane needs.

Runs ``scripts/package-serverless.sh`` (osls, pinned in infra/serverless; installed with
``npm ci`` when missing) once for the module, with dummy credentials and no AWS.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "package-serverless.sh"

# The first run may install osls with `npm ci` (half a minute on a fresh machine).
pytestmark = pytest.mark.timeout(600)

Template = dict[str, Any]

FUNCTIONS = {
    # function name: (logical id prefix, handler attribute)
    "publish-config": ("PublishDashconfig", "publish_config"),
    "keys": ("Keys", "keys"),
    "usage-rollup": ("UsageDashrollup", "usage_rollup"),
    "health-sweep": ("HealthDashsweep", "health_sweep"),
    "scale-fleet": ("ScaleDashfleet", "scale_fleet"),
}


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def _account_arn(service: str, tail: str) -> dict[str, Any]:
    parts = [f"arn:aws:{service}:", {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"}, tail]
    return {"Fn::Join": ["", parts]}


def _logs(function: str) -> dict[str, Any]:
    group = f"/aws/lambda/gateway-control-test-{function}"
    return {
        "Effect": "Allow",
        "Action": ["logs:CreateLogStream", "logs:CreateLogGroup", "logs:PutLogEvents"],
        "Resource": [
            _sub(
                f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:{group}:*:*"
            )
        ],
    }


LAYER = "arn:aws:lambda:us-east-1:000000000000:layer:gateway-control-deps:1"
QUEUE_ARN = {"Fn::GetAtt": ["UsageQueue", "Arn"]}

# Every statement of every function's role, exactly.
EXPECTED_STATEMENTS: dict[str, list[dict[str, Any]]] = {
    "publish-config": [
        _logs("publish-config"),
        {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": "arn:aws:s3:::gateway-config-test/gateway/*",
        },
    ],
    "keys": [_logs("keys")],
    "usage-rollup": [
        _logs("usage-rollup"),
        {
            "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
            "Resource": [QUEUE_ARN],
        },
        {
            "Effect": "Allow",
            "Action": [
                "dynamodb:GetItem",
                "dynamodb:BatchGetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:TransactWriteItems",
            ],
            "Resource": {"Fn::GetAtt": ["LedgerTable", "Arn"]},
        },
        {
            "Effect": "Allow",
            "Action": ["s3:PutObject"],
            "Resource": "arn:aws:s3:::gateway-usage-test/usage/*",
        },
        {
            "Effect": "Allow",
            "Action": ["events:PutEvents"],
            "Resource": _account_arn("events", ":event-bus/default"),
        },
    ],
    "health-sweep": [
        _logs("health-sweep"),
        {
            "Effect": "Allow",
            "Action": ["cloudwatch:PutMetricData"],
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": "Gateway/Control"}},
        },
    ],
    "scale-fleet": [
        _logs("scale-fleet"),
        {
            "Effect": "Allow",
            "Action": ["autoscaling:DescribeAutoScalingGroups"],
            "Resource": "*",
        },
        {
            "Effect": "Allow",
            "Action": ["autoscaling:SetDesiredCapacity"],
            "Resource": _account_arn(
                "autoscaling", ":autoScalingGroup:*:autoScalingGroupName/gateway-fleet-*"
            ),
        },
    ],
}

# The only actions AWS lets be granted on resource `*` alone (no resource-level permissions).
STAR_RESOURCE_ACTIONS = {"cloudwatch:PutMetricData", "autoscaling:DescribeAutoScalingGroups"}


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serverless")
    result = subprocess.run(
        [str(SCRIPT), str(out)], cwd=ROOT, capture_output=True, text=True, timeout=540
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def template(package_dir: Path) -> Template:
    loaded: Template = json.loads(
        (package_dir / "cloudformation-template-update-stack.json").read_text()
    )
    return loaded


def _resources(template: Template, kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _function(template: Template, name: str) -> dict[str, Any]:
    resource: dict[str, Any] = template["Resources"][f"{FUNCTIONS[name][0]}LambdaFunction"]
    return resource


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        s
        for policy in role["Properties"]["Policies"]
        for s in policy["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_exactly_the_five_functions_on_python_3_12(template: Template) -> None:
    functions = _resources(template, "AWS::Lambda::Function")
    ours = {f"{prefix}LambdaFunction" for prefix, _ in FUNCTIONS.values()}
    # osls adds one more: the custom resource that sets the existing bucket's notification.
    assert set(functions) == ours | {"CustomDashresourceDashexistingDashs3LambdaFunction"}
    handlers = importlib.import_module("gateway_aws.handlers")
    for name, (_, attribute) in FUNCTIONS.items():
        props = _function(template, name)["Properties"]
        assert props["FunctionName"] == f"gateway-control-test-{name}"
        assert props["Runtime"] == "python3.12"
        assert props["Handler"] == f"gateway_aws.handlers.{attribute}"
        assert callable(getattr(handlers, attribute))
        assert props["Layers"] == [
            "arn:aws:lambda:us-east-1:000000000000:layer:gateway-control-deps:1"
        ]
        env = props["Environment"]["Variables"]
        assert env["PYTHONPATH"].split(":")[0] == "/var/task/plugins"
        assert env["LEDGER_TABLE"] == {"Ref": "LedgerTable"}
        assert env["USAGE_QUEUE"] == {"Ref": "UsageQueue"}
        assert env["CONFIG_BUCKET"] == "gateway-config-test"
        assert env["CONFIG_PREFIX"] == "gateway/"
        secrets = {k: v for k, v in env.items() if k.startswith("GATEWAY_")}
        # Resolved by CloudFormation at deploy time: packaging never reads them.
        assert secrets == {
            "GATEWAY_KEY_PEPPER": "{{resolve:ssm:/gateway-control/test/key-pepper}}",
            "GATEWAY_MASTER_KEY": "{{resolve:ssm:/gateway-control/test/master-key}}",
        }


def test_publish_config_hears_yaml_uploads_under_the_prefix_of_the_existing_bucket(
    template: Template,
) -> None:
    (notification,) = _resources(template, "Custom::S3").values()
    props = notification["Properties"]
    assert props["FunctionName"] == "gateway-control-test-publish-config"
    assert props["BucketName"] == "gateway-config-test"
    assert props["BucketConfigs"] == [
        {"Event": "s3:ObjectCreated:*", "Rules": [{"Prefix": "gateway/"}, {"Suffix": ".yaml"}]}
    ]
    # existing: true, so no bucket is created by the stack (only osls's deployment bucket).
    assert set(_resources(template, "AWS::S3::Bucket")) == {"ServerlessDeploymentBucket"}


def test_keys_serves_the_admin_routes_of_an_http_api_without_an_authorizer(
    template: Template,
) -> None:
    routes = _resources(template, "AWS::ApiGatewayV2::Route").values()
    assert sorted(r["Properties"]["RouteKey"] for r in routes) == [
        "ANY /admin/keys",
        "ANY /admin/keys/{proxy+}",
        "ANY /admin/tenants",
        "ANY /admin/tenants/{proxy+}",
    ]
    for route in routes:
        # The function checks the master key itself (the gateway's own admin code).
        assert "AuthorizerId" not in route["Properties"]
        assert route["Properties"]["Target"] == {
            "Fn::Join": ["/", ["integrations", {"Ref": "HttpApiIntegrationKeys"}]]
        }
    assert _resources(template, "AWS::ApiGatewayV2::Authorizer") == {}
    integration = template["Resources"]["HttpApiIntegrationKeys"]["Properties"]
    assert integration["IntegrationUri"] == {"Fn::GetAtt": ["KeysLambdaFunction", "Arn"]}
    assert integration["PayloadFormatVersion"] == "2.0"
    assert _function(template, "keys")["Properties"]["Timeout"] == 29


def test_usage_rollup_consumes_the_queue_with_partial_batch_failures(template: Template) -> None:
    (mapping,) = _resources(template, "AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["FunctionName"] == {"Fn::GetAtt": ["UsageDashrollupLambdaFunction", "Arn"]}
    assert props["EventSourceArn"] == QUEUE_ARN
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BatchSize"] == 100
    assert props["MaximumBatchingWindowInSeconds"] == 5
    assert props["Enabled"] is True


def test_health_sweep_and_scale_fleet_run_every_minute(template: Template) -> None:
    rules = _resources(template, "AWS::Events::Rule")
    targets = {}
    for rule in rules.values():
        props = rule["Properties"]
        assert props["ScheduleExpression"] == "rate(1 minute)"
        assert props["State"] == "ENABLED"
        (target,) = props["Targets"]
        targets[target["Arn"]["Fn::GetAtt"][0]] = rule
    assert set(targets) == {"HealthDashsweepLambdaFunction", "ScaleDashfleetLambdaFunction"}


def test_each_function_has_exactly_its_events(template: Template) -> None:
    permissions = _resources(template, "AWS::Lambda::Permission").values()
    invokers = sorted(
        (p["Properties"]["FunctionName"]["Fn::GetAtt"][0], p["Properties"]["Principal"])
        for p in permissions
    )
    # S3's permission is added by the custom resource at deploy time (lambda:AddPermission).
    assert invokers == [
        ("HealthDashsweepLambdaFunction", "events.amazonaws.com"),
        ("KeysLambdaFunction", "apigateway.amazonaws.com"),
        ("ScaleDashfleetLambdaFunction", "events.amazonaws.com"),
    ]


def test_the_owned_resources(template: Template) -> None:
    table = template["Resources"]["LedgerTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["AttributeDefinitions"] == [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    queue = template["Resources"]["UsageQueue"]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["UsageDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    # A message must stay invisible while one invocation works on it (AWS advises 6 times).
    rollup_timeout = _function(template, "usage-rollup")["Properties"]["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * rollup_timeout
    assert "RedrivePolicy" not in template["Resources"]["UsageDeadLetterQueue"]["Properties"]


def test_each_function_has_its_own_role_with_exactly_its_statements(template: Template) -> None:
    for name, (prefix, _) in FUNCTIONS.items():
        role_id = f"{prefix}IamRoleLambdaExecution"
        assert _function(template, name)["Properties"]["Role"] == {"Fn::GetAtt": [role_id, "Arn"]}
        role = template["Resources"][role_id]
        assert role["Properties"]["ManagedPolicyArns"] == []
        assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com"]},
                "Action": ["sts:AssumeRole"],
            }
        ]
        assert _statements(role) == EXPECTED_STATEMENTS[name], name


def test_no_statement_allows_a_star_action(template: Template) -> None:
    roles = _resources(template, "AWS::IAM::Role")
    # Ours, osls's custom resource role, and osls's default role, which no function uses.
    assert len(roles) == len(FUNCTIONS) + 2
    assert {
        f["Properties"]["Role"]["Fn::GetAtt"][0]
        for f in _resources(template, "AWS::Lambda::Function").values()
    }.isdisjoint({"IamRoleLambdaExecution"})
    for role_id, role in roles.items():
        for statement in _statements(role):
            assert statement["Effect"] == "Allow"
            for action in _actions(statement):
                assert "*" not in action, (role_id, action)
            if statement["Resource"] == "*":
                assert set(_actions(statement)) <= STAR_RESOURCE_ACTIONS, (role_id, statement)
    # The deployment bucket's policy only denies (requests not over TLS).
    (policy,) = _resources(template, "AWS::S3::BucketPolicy").values()
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": False}}


def test_the_package_holds_the_code_and_nothing_else(package_dir: Path) -> None:
    with zipfile.ZipFile(package_dir / "gateway-control.zip") as archive:
        names = archive.namelist()
    tops = {name.split("/")[0] for name in names}
    assert tops == {"gateway", "plugins"}
    assert "plugins/gateway_aws/handlers.py" in names
    assert "gateway/control/base.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
