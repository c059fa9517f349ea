// The parser ships no types of its own; this is the shape its README documents.
declare module 'parse-prometheus-text-format' {
  interface ParsedFamily {
    name: string
    help: string
    type: 'COUNTER' | 'GAUGE' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED'
    metrics: Array<{ value?: string; labels?: Record<string, string>; buckets?: Record<string, string> }>
  }
  export default function parsePrometheusTextFormat(text: string): ParsedFamily[]
}
