"""Development-only code: the local stack and the workload simulator. The worker never imports it."""
