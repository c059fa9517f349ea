// The enrichment transport's enrichers in the benchmark: the same 8 global
// fields as the hand-written reference, and the 2 request fields.
import { defineContextFields, defineEnricher } from 'pino-enrich'

const STATIC = {
  service: { name: 'checkout', version: '1.4.2' },
  deployment: { environment: 'production', region: 'eu-west-1' },
  host: { name: 'ip-10-0-0-1', arch: 'x64' },
  container: { id: 'c0ffee', runtime: 'containerd' },
}

export default [
  ...Object.entries(STATIC).map(([name, fields]) => defineEnricher({ name, compute: () => ({ [name]: fields }) })),
  defineContextFields({ name: 'request', keys: { requestId: 'requestId', userId: 'userId' } }),
]
