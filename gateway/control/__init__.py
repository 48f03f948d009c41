"""The control plane's jobs as plain functions: publish-config, keys, usage-rollup,
health-sweep, scale-fleet (``docs/control-plane.md``). Each also runs as ``gateway control
<name>``; the AWS Lambda handlers (plugin ``gateway_aws``) call the same functions."""
