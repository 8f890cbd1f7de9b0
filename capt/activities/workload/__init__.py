"""Access to a workload cluster from capt's activities: its Kubernetes API and its etcd members.

- `client`: an HTTPS client for the cluster's API server at the control-plane endpoint. The server
  is verified against the cluster CA and capt authenticates with the admin client certificate
  (mutual TLS). Both are read from Secrets Manager inside the activity and only kept in memory.
- `objects`: pure functions over Kubernetes objects (Node readiness and providerID, which pods a
  drain evicts).
- `drain`: cordon-and-evict, honouring PodDisruptionBudgets (429 = blocked, retried until a timeout).
- `activities`: the Temporal activities on top (readyz, nodes, cordon, drain, delete, the
  bootstrap-token Secret). Arguments and results carry names and ARNs, never key material.
- `etcd`: etcd membership through SSM Run Command on a healthy control-plane instance.
- `teardown`: before a cluster's AWS resources go, delete the LoadBalancer Services and EBS-backed
  claims (and the pods holding them) so the cloud controllers release their ELBs and volumes;
  report the load balancer names and volume ids learned.
"""
