export type { CloudEndpoints, CloudEnricherOptions } from './cloud.js'
export {
  CLOUD_ENDPOINTS,
  CLOUD_ENV,
  CloudProvider,
  cloudEnricher,
  MetadataError,
  MetadataErrorCode,
} from './cloud.js'
export type { ContainerEnricherOptions } from './container.js'
export { containerEnricher, K8S_ENV } from './container.js'
export type { DeploymentEnricherOptions } from './deployment.js'
export { DEPLOYMENT_ENV, deploymentEnricher } from './deployment.js'
export type { HostEnricherOptions } from './host.js'
export { hostEnricher } from './host.js'
export type { ProcessEnricherOptions } from './process.js'
export { processEnricher } from './process.js'
export type { NamedEnricherFn, RequestEnricherOptions } from './request.js'
export { REQUEST_KEYS, requestEnricher } from './request.js'
export type { ResourceEnricherOptions, ResourceSource } from './resource.js'
export { resourceEnricher } from './resource.js'
export type { RuntimeEnricherOptions } from './runtime.js'
export { runtimeEnricher } from './runtime.js'
export type { OtelTraceApi, SpanContextLike, TraceEnricherOptions } from './trace.js'
export { OTEL_API, traceEnricher } from './trace.js'
