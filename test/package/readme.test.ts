import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

// README as a newcomer reads it, on GitHub or on the registry's page (where
// only the tarball's files exist): every link works, and the test command
// says what it needs.

const root = fileURLToPath(new URL('../..', import.meta.url))
const readme = readFileSync(join(root, 'README.md'), 'utf8')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { homepage: string }
const REPO_FILE = 'https://github.com/pino-enrich/pino-enrich/blob/main/'

/** README without its fenced code blocks, where `](` is code, not a link. */
const prose = readme.replace(/^```[\s\S]*?^```/gm, '')
const links = [...prose.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1] as string)

/** GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens. */
const anchors = new Set(
  [...readme.replace(/^```[\s\S]*?^```/gm, '').matchAll(/^#{1,6} (.+)$/gm)].map((m) =>
    (m[1] as string)
      .toLowerCase()
      .replace(/[^\p{L}\p{N} _-]/gu, '')
      .replace(/ /g, '-'),
  ),
)

describe('the Node running these tests', () => {
  // .ci/run runs this folder on Node 22 and 24 through the npm `node` package,
  // naming the major it asked for: this checks it got it.
  it.runIf(process.env.PINO_ENRICH_CI_NODE !== undefined)('is the major .ci/run asked for', () => {
    console.log(`running on Node ${process.version}`)
    expect(process.versions.node.split('.')[0]).toBe(process.env.PINO_ENRICH_CI_NODE)
  })

  it('is one engines allows (>= 20)', () => {
    const engines = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string } })
      .engines.node
    expect(engines).toBe('>=20')
    expect(Number(process.versions.node.split('.')[0])).toBeGreaterThanOrEqual(20)
  })
})

describe('README.md', () => {
  it('links only to its own headings or to absolute https addresses', () => {
    expect(links.length).toBeGreaterThan(10)
    for (const link of links) {
      if (link.startsWith('#')) expect(anchors, link).toContain(link.slice(1))
      else expect(link).toMatch(/^https:\/\//)
    }
  })

  it('names docs/ and examples/ files by links into the repository, and those files exist', () => {
    // A bare `docs/x.md` in prose is a dead end on the registry's page.
    expect(prose.replace(/\[[^\]]*\]\([^)]*\)/g, '')).not.toMatch(/\b(docs|examples)\/[\w-]+\.\w+/)
    const intoRepo = links.filter((l) => l.startsWith(REPO_FILE))
    expect(intoRepo.length).toBeGreaterThan(0)
    for (const link of intoRepo) expect(existsSync(join(root, link.slice(REPO_FILE.length))), link).toBe(true)
    expect(pkg.homepage).toBe('https://github.com/pino-enrich/pino-enrich#readme')
  })

  it("says what `npm test` needs and the command that installs it, as the suite's own hint does", () => {
    const block = /```sh\n([\s\S]*?)```/.exec(readme)?.[1] ?? ''
    expect(block).toMatch(/^npm test .*redis-server/m)
    expect(readme).toContain('`sudo apt-get install -y redis-server`')
    const helper = readFileSync(join(root, 'test/helpers/redis-server.ts'), 'utf8')
    expect(helper).toContain('`sudo apt-get install -y redis-server`')
  })
})
