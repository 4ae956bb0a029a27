package v1alpha1

// ConditionReconcileFailure is True while passes of the set fail before
// they can place pods (its ControllerRevision cannot be written, the
// caches cannot be read); reason and message say why. A pass that gets
// through removes it.
const ConditionReconcileFailure = "ReconcileFailure"
