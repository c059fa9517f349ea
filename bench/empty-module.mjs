// An ES module with nothing in it, for bench/import.ts: what Node's loader
// costs for the first module file it reads, whatever the package.
export default undefined
