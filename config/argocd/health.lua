-- Argo CD health check for nodeagentset.io/v1alpha1 NodeAgentSet.
-- Install it under argocd-cm's
-- resource.customizations.health.nodeagentset.io_NodeAgentSet (see README).
-- It reads only what the API contract fixes (conditions and spec fields),
-- so it gives the same answer as kstatus (Flux, kubectl wait) wherever the
-- two have the same word: Healthy = Current, Progressing = InProgress,
-- Degraded = Failed. Suspended (paused or spec.suspend) is kstatus Current.
local hs = { status = "Progressing", message = "Waiting for the controller to report status" }

local function condition(conds, kind)
  if conds == nil then
    return nil
  end
  for _, c in ipairs(conds) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

local function describe(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return fallback
end

if obj.status == nil then
  return hs
end
local st = obj.status
local conds = st.conditions

-- A spec the controller has not seen yet says nothing about the status.
local generation = obj.metadata.generation
if generation ~= nil and (st.observedGeneration == nil or st.observedGeneration < generation) then
  hs.message = "Waiting for the controller to observe generation " .. generation
  local failure = condition(conds, "ReconcileFailure")
  if isTrue(failure) then
    hs.message = describe(failure, hs.message)
  end
  return hs
end

-- Stalled: the progress deadline passed (ProgressDeadlineExceeded), the set
-- cannot be acted on as written (InvalidSpec), or a rollout health check
-- failed (HealthCheckFailed). kstatus says Failed.
local stalled = condition(conds, "Stalled")
if isTrue(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled, "The set is stalled")
  return hs
end

-- spec.suspend: every agent removed on purpose.
local suspended = condition(conds, "Suspended")
if isTrue(suspended) or (obj.spec ~= nil and obj.spec.suspend == true) then
  hs.status = "Suspended"
  hs.message = describe(suspended, "The set is suspended: no agent runs")
  return hs
end

local reconciling = condition(conds, "Reconciling")
-- A paused rollout with nothing else to do: Reconciling False, reason Paused.
if reconciling ~= nil and reconciling.status == "False" and reconciling.reason == "Paused" then
  hs.status = "Suspended"
  hs.message = describe(reconciling, "The rollout is paused")
  return hs
end

if isTrue(reconciling) then
  hs.message = describe(reconciling, "Agents are being placed, replaced or removed")
  -- A refusal from the API server is worth showing while it lasts; the
  -- progress deadline turns a lasting one into Stalled.
  for _, kind in ipairs({ "PodFailure", "ReconcileFailure" }) do
    local failure = condition(conds, kind)
    if isTrue(failure) then
      hs.message = describe(failure, hs.message)
    end
  end
  return hs
end

local available = condition(conds, "Available")
if reconciling ~= nil and isTrue(available) then
  hs.status = "Healthy"
  hs.message = describe(available, "Every desired node has an available agent")
  return hs
end
hs.message = describe(available, hs.message)
return hs
