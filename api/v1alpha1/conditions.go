package v1alpha1

// ConditionReconcileFailure is True while passes of the set fail before
// they can place pods (its ControllerRevision cannot be written, the
// caches cannot be read); reason and message say why. A pass that gets
// through removes it.
const ConditionReconcileFailure = "ReconcileFailure"

// ConditionSuspended is True while spec.suspend is set (reason Suspended):
// the set's agents are deleted and none is placed. Reconciling stays True
// (reason Suspending) until the last agent pod is gone, then False
// (reason Suspended), so kstatus reads a suspended set with no pods left
// as Current. Once the set is resumed it turns False (reason Resumed).
const ConditionSuspended = "Suspended"

// ConditionStartupTaintRemoved, on a set with spec.startupTaint, says
// whether the controller can lift that taint from nodes whose agent is
// available: True (reason Lifting) when it can, False with reason
// Forbidden when the manager may not patch nodes (the message names the
// missing permission) or PatchFailed for another error.
const ConditionStartupTaintRemoved = "StartupTaintRemoved"
