"""The simulated instances and their workload clusters.

One `World` holds every instance the simulator watches (`Machine`, keyed by instance id) and
every workload cluster that a `kubeadm init` brought up (`Cluster`, keyed by its endpoint host:
the load balancer DNS name the worker connects to, and the TLS server name the API is picked by).

Life of an instance
1. Seen running in the emulated EC2 (owned by a cluster, role control-plane or node): `waiting`.
2. After its boot delay, the boothook runs (`boot_step`, the only part doing I/O, through a
   `BootIO`): read the user data, fetch the bootstrap chunks from Secrets Manager (retrying as
   the boothook does), delete them, write the file. cloud-init renders the jinja header with the
   instance's data and runs kubeadm: `joining`.
3. kubeadm init or join (`simulator.kubeadm`): success registers a Node (NotReady until its CNI
   comes up after `ready_delay`), an etcd member for control-plane nodes and the static pods;
   init creates the cluster with its API. A permanent refusal ends in `failed` with the reason
   logged; a transient one (no API at the endpoint yet, unknown or expired token) is retried until
   `join_timeout`, as kubeadm's discovery does.
4. Instance stopped, terminated or gone: its Node turns Unknown (NodeStatusUnknown) and, after
   `node_gone_delay`, is deleted with its pods (the cloud node lifecycle controller). Back to
   running: the kubelet posts Ready again (re-registering a deleted Node).

Thread-safety: every public method takes `lock` itself; `boot_step` does its I/O outside it.

Modules: `state` (the data: settings, views, machines, nodes, pods, clusters, faults), `core`
(`World` and observation), and `World`'s mixins `boot` (boothook, cloud-init, kubeadm), `kubelet`
(the passing of time), `api` (what kubeapi and SSM use) and `admin` (faults, snapshot).
"""
