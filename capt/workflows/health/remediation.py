"""HealthCheckWorkflow: remediation (a mixin of the workflow class in workflow.py; the
workflow's handlers and run stay there)."""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    import capt.workflows.health.detection as detect
    from capt.activities.owners import (
        RemediationCall,
        RemediationOutcome,
        WatchedMachine,
        request_remediation,
    )
    from capt.spec.models import HealthCheckSpec
    from capt.workflows.health.models import (
        PATCH_EXTERNAL_REMEDIATION,
        REMEDIATE,
        ExternalRemediation,
        InFlight,
    )


class _RemediationMixin:
    async def _remediate(
        self,
        ev: detect.CheckEvaluation,
        machines: list[WatchedMachine],
        owner_ids: dict[str, str],
        now: datetime,
    ) -> None:
        """Ask each owner about this check's candidates: the control plane one machine at a time
        (KCP remediates one at a time and judges quorum on the whole unhealthy set), each
        deployment all of its candidates in one Update. A check with a remediation template asks
        no owner: it records external remediation requests."""
        check = next(c for c in self._checks if c.name == ev.check)
        if check.remediation_template is not None and workflow.patched(PATCH_EXTERNAL_REMEDIATION):
            self._request_external(ev, check, now)
            return
        if not ev.remediate:
            for name in ev.deferred:
                self._decide(name, ev.check, "deferred", ev.note)
            return
        by_name = {m.name: m for m in machines}
        verdicts = {v.machine: v for v in ev.verdicts}
        groups: dict[str, list[str]] = {}
        for name in ev.remediate:
            groups.setdefault(detect.owner_key(by_name[name]), []).append(name)
        for name in ev.deferred:
            self._decide(name, ev.check, "deferred", ev.note)
        for owner, names in groups.items():
            first = by_name[names[0]]
            if first.owner == "control-plane":
                names = names[:1]
                call = RemediationCall(
                    owner="control-plane",
                    owner_workflow_id=owner_ids[owner],
                    machines=tuple(names),
                    reason="; ".join(verdicts[names[0]].reasons),
                    # Quorum is judged on every machine of the control plane found unhealthy.
                    unhealthy_machines=tuple(
                        v.machine for v in ev.verdicts if v.unhealthy and v.owner == owner
                    ),
                    update_id=self._update_id(ev.check, names, now),
                )
            else:
                call = RemediationCall(
                    owner="machine-deployment",
                    owner_workflow_id=owner_ids[owner],
                    machines=tuple(names),
                    reason="; ".join(f"{n}: {'; '.join(verdicts[n].reasons)}" for n in names),
                    max_in_flight=check.max_in_flight,
                    update_id=self._update_id(ev.check, names, now),
                )
            try:
                outcome: RemediationOutcome = await workflow.execute_activity(
                    request_remediation, call, **REMEDIATE
                )
            except ActivityError as err:
                for name in names:
                    self._decide(name, ev.check, "request-failed", str(err.cause or err))
                continue
            for name in outcome.remediated:
                self._carry.in_flight[name] = InFlight(
                    check=ev.check, owner=owner, requested_at=now.timestamp()
                )
                self._decide(name, ev.check, "accepted", f"{owner} replaces it ({call.reason})")
            # A deployment defers for maxInFlight; a control plane refusal (quorum, a remediation
            # in progress) or an owner's rejection is a refusal. Asked again next interval.
            refused = outcome.rejected or first.owner == "control-plane"
            for name in outcome.deferred:
                self._decide(name, ev.check, "refused" if refused else "deferred", outcome.reason)
            for name in outcome.skipped:
                self._decide(name, ev.check, "skipped", outcome.reason or "left to the rollout")

    def _request_external(self, ev: detect.CheckEvaluation, check: HealthCheckSpec, now: datetime) -> None:
        """CAPI's external remediation: one request per unhealthy machine while remediation is
        allowed (maxUnhealthy / unhealthyRange; maxInFlight is the owners' and does not apply)."""
        t = check.remediation_template
        assert t is not None
        if not ev.allowed or not check.remediation_enabled:
            return
        template = f"{t.kind}/{t.name} ({t.api_version})"
        for v in ev.unhealthy:
            if v.machine in self._carry.external:
                continue
            reason = "; ".join(v.reasons)
            self._carry.external[v.machine] = ExternalRemediation(
                machine=v.machine, check=ev.check, template=template, requested_at=now, reason=reason
            )
            self._decide(
                v.machine,
                ev.check,
                "external-remediation",
                f"requested from {template}; capt leaves the machine ({reason})",
            )

    def _withdraw_external(
        self, evaluations: list[detect.CheckEvaluation], machines: list[WatchedMachine]
    ) -> None:
        """A request whose machine is gone, or healthy again by its check, is withdrawn (CAPI
        deletes the remediation object when the machine is healthy)."""
        present = {m.name for m in machines}
        healthy = {(ev.check, v.machine) for ev in evaluations for v in ev.verdicts if v.healthy}
        for name, req in list(self._carry.external.items()):
            if name not in present:
                why = "the machine is gone"
            elif (req.check, name) in healthy:
                why = "the machine is healthy again"
            else:
                continue
            del self._carry.external[name]
            self._decide(name, req.check, "external-remediation-withdrawn", why)

    # --- helpers -----------------------------------------------------------------------------------
    def _update_id(self, check: str, names: list[str], now: datetime) -> str:
        # Same id for every retry of this activity (Temporal dedupes Updates by id).
        return f"health-{check}-{'+'.join(names)}-{int(now.timestamp())}"

    def _decide(self, machine: str, check: str, kind: str, message: str) -> None:
        key = f"machine:{machine}"
        text = f"{kind}: {message}"
        if self._carry.last_decision.get(key) == text:
            return
        self._carry.last_decision[key] = text
        self._event(kind, check=check, machine=machine, message=message)
