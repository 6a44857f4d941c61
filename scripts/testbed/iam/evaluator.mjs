// Test bed only (SPEC §15): evaluates requests against a role's policies with a maintained IAM
// simulator, @cloud-copilot/iam-simulate, which knows every condition operator and each action's
// resource types and condition keys. The test bed's IAM gate (crates/cli/tests/e2e/support/iam.rs)
// turns each AWS request a function makes into authorization requests (action, resource,
// context keys, as AWS authorizes them) and asks here.
//
//   node evaluator.mjs      listens on a free loopback port, prints "listening PORT"
//
// POST /simulate {"policies": [POLICY...], "principal": ARN, "account": ID,
//                 "requests": [{"action", "resource", "context", "resourcePolicy"?}]}
// resourcePolicy: the resource's own policy where AWS requires one (a KMS key's key policy).
//   -> {"results": [{"action", "resource", "decision", "error"?}]}
// decision: Allowed, ImplicitlyDenied, ExplicitlyDenied, or Invalid (the simulator refused the
// request: an unknown action, a resource of a type the action does not take, a context key it
// does not know). The gate refuses everything but Allowed: unknown keys fail closed.

import { createServer } from 'node:http'
import { runSimulation } from '@cloud-copilot/iam-simulate'

async function decide(body) {
  const identityPolicies = body.policies.map((policy, i) => ({ name: `policy-${i}`, policy }))
  const results = []
  for (const r of body.requests) {
    const response = await runSimulation(
      {
        identityPolicies,
        serviceControlPolicies: [],
        resourceControlPolicies: [],
        ...(r.resourcePolicy ? { resourcePolicy: r.resourcePolicy } : {}),
        request: {
          action: r.action,
          principal: body.principal,
          resource: { accountId: body.account, resource: r.resource },
          contextVariables: r.context || {}
        }
      },
      {}
    )
    if (response.resultType === 'error') {
      results.push({ action: r.action, resource: r.resource, decision: 'Invalid', error: JSON.stringify(response.errors) })
    } else {
      results.push({ action: r.action, resource: r.resource, decision: response.overallResult })
    }
  }
  return { results }
}

const server = createServer((req, res) => {
  let data = ''
  req.on('data', (chunk) => (data += chunk))
  req.on('end', async () => {
    try {
      const out = await decide(JSON.parse(data))
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(out))
    } catch (e) {
      res.writeHead(400, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ error: String(e && e.stack ? e.stack : e) }))
    }
  })
})
server.keepAliveTimeout = 0
server.listen(0, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`)
})
