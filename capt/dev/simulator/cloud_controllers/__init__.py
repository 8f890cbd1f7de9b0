"""The cloud controllers of every simulated cluster, against the emulated AWS (moto): the AWS
cloud-controller-manager's service controller (classic ELBs) and the EBS CSI driver's controller
(with its external-provisioner and external-attacher), with upstream's names, tags and order.

Cloud-controller-manager (kubernetes/cloud-provider-aws `pkg/providers/v1`)
- Cluster id: from the control-plane instance's one `kubernetes.io/cluster/<id>` tag (or legacy
  `KubernetesCluster=<id>`), as the CCM reads it from the instance it runs on; its VPC likewise.
  Two different cluster tags, or none: the CCM does not start (logged; no load balancer is made).
- A Service of `type: LoadBalancer` (no `loadBalancerClass`, not `aws-load-balancer-type:
  external`/`nlb`): the finalizer `service.kubernetes.io/load-balancer-cleanup` first, then
  - the security group `k8s-elb-<lb>` in the VPC, described `Security group for Kubernetes ELB
    <lb> (<ns>/<name>)`, tagged `kubernetes.io/cluster/<id>=owned` at creation; ingress from
    `loadBalancerSourceRanges` (default 0.0.0.0/0) on every port, and ICMP 3-4 (path MTU);
  - the classic ELB `<lb>` = `a` + the Service UID without dashes, cut to 32 characters, one
    public subnet per AZ (subnets of the VPC tagged for the cluster, or without any cluster tag;
    public = routed to an internet gateway; ties broken by `kubernetes.io/role/elb`, then the
    cluster tag, then the smaller id), TCP listeners to the node ports, tagged
    `kubernetes.io/service-name=<ns>/<name>` and `kubernetes.io/cluster/<id>=owned`, with a TCP
    health check on the first node port;
  - on each target instance's security group (the one tagged for the cluster, else its only
    group; several: refused as the CCM does) an ingress rule for all traffic from the ELB's
    group — the rule that blocks deleting that group;
  - the nodes' instances registered (not those labelled
    `node.kubernetes.io/exclude-from-external-load-balancers`, which kubeadm's control planes are);
  - `status.loadBalancer.ingress[0].hostname` = the ELB's DNS name.
  Deleting the Service (or changing its type) undoes it in the CCM's order: the rules referencing
  the ELB's group, the ELB, then the group (a `DependencyViolation` is retried for 10 minutes and
  then given up, leaking the group as the CCM does), and finally the finalizer.
- Knob `ccm-down <cluster>`: nothing is made or removed; deleted Services stay Terminating.

EBS CSI driver (kubernetes-sigs/aws-ebs-csi-driver, `ebs.csi.aws.com`)
- A PVC whose StorageClass (its `storageClassName`, else the default class) has the provisioner
  `ebs.csi.aws.com` (or in-tree `kubernetes.io/aws-ebs`, migrated to it): `CreateVolume` (a
  ClientToken of sha256(PV name); the simulator also looks the volume up by its `CSIVolumeName`
  tag, since moto ignores ClientToken) in the zone of the node of a pod that uses it
  (`WaitForFirstConsumer`) or of the first Ready node (`Immediate`), type/encryption/iops from the
  class parameters, tags `CSIVolumeName=<pv>`, `ebs.csi.aws.com/cluster=true`; with
  `--extra-create-metadata` `kubernetes.io/created-for/pvc/name|namespace` and
  `kubernetes.io/created-for/pv/name`; with `--k8s-tag-cluster-id=<id>`
  `kubernetes.io/cluster/<id>=owned`, `Name=<id>-dynamic-<pv>`, `KubernetesCluster=<id>`,
  `ebs.csi.aws.com/cluster-name=<id>`. Then the PV `pvc-<pvc uid>` (`spec.csi.volumeHandle` = the
  volume id, or in-tree `awsElasticBlockStore.volumeID` = `aws://<az>/<vol>`; node affinity to the
  zone; reclaim policy from the class, default Delete) bound to the PVC.
  The driver's flags come from the cluster's applied EBS CSI controller Deployment (a container
  whose image is `…aws-ebs-csi-driver…`: `--k8s-tag-cluster-id=`, `--extra-tags=`; the
  csi-provisioner's `--extra-create-metadata`), else from `CloudOptions` (the simulator's
  `--csi-tag-cluster-id` = tag with the cluster id learned from the instances).
- Attach/detach: a volume is attached (`AttachVolume`) to the instance of the node where a pod
  that mounts its PVC runs, and detached once no such pod is left.
- A PV with reclaim policy Delete whose claim is gone (`Released`): `DeleteVolume` (retried while
  `VolumeInUse`), then the PV is removed.
- Knob `csi-down <cluster>`: nothing is provisioned, attached, detached or deleted.

The kube-controller-manager parts without AWS (pvc-protection, pv-protection, Released) are in
simulator.storage. `reconcile` runs every `cloud_interval`: it takes a snapshot under the world's
lock, does its AWS calls outside it, and writes the results back under the lock (checking the
object's uid). What is done is remembered, so a steady state costs no AWS call; a failure is
retried with backoff (5 s doubling to 60 s), its reason logged once.

Modules: `names` (constants and pure naming/tagging rules), `work` (a round's snapshot, results and
AWS helpers), `core` (`CloudControllers`, the round and its retries) and its mixins `snapshot`,
`load_balancers` (CCM), `volumes` (EBS CSI) and `write_back`.
"""
