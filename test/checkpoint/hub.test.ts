import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { hubCacheDir, hubOfflineFromEnv, parseHubId, resolveHubModel, HubRepoNotFound, type HubOptions } from '../../src/checkpoint/hub.js';
import { writeSafetensors } from '../../src/checkpoint/safetensors.js';
import { FakeHub, sha40, type FakeRepo } from './fake-hub.js';
import { rejectsUser, tempDir } from './tmp.js';

const root = tempDir('hub');

function st(name: string, value: number): Buffer {
  const p = join(root, `${name}-${value}.safetensors`);
  writeSafetensors(p, { [`${name}.weight`]: { dtype: 'F32', shape: [2], data: [value, value] } });
  return readFileSync(p);
}

const C1 = sha40('commit-1');
const C2 = sha40('commit-2');
const REPOS: Record<string, FakeRepo> = {
  'google/vit-tiny': {
    commits: {
      [C1]: { 'config.json': '{"model_type":"vit","v":1}', 'model.safetensors': st('a', 1) },
      [C2]: { 'config.json': '{"model_type":"vit","v":2}', 'preprocessor_config.json': '{"size":224}', 'model.safetensors': st('a', 2) },
    },
    refs: { main: C2, 'v1.0': C1 },
  },
  'big/sharded': {
    commits: {
      [C1]: {
        'config.json': '{}',
        'model.safetensors.index.json': JSON.stringify({ weight_map: { 'a.weight': 'model-00001-of-00002.safetensors', 'b.weight': 'model-00002-of-00002.safetensors' } }),
        'model-00001-of-00002.safetensors': st('a', 3),
        'model-00002-of-00002.safetensors': st('b', 4),
      },
    },
    refs: { main: C1 },
  },
  'old/bin-only': { commits: { [C1]: { 'config.json': '{}', 'pytorch_model.bin': Buffer.from('PK\x03\x04fake') } }, refs: { main: C1 } },
  'org/no-weights': { commits: { [C1]: { 'config.json': '{}', 'README.md': 'hi' } }, refs: { main: C1 } },
};

let n = 0;
/** Options for one isolated run: its own cache and HF_HOME, this hub, a token, no progress bar. */
function opts(hub: FakeHub | { url: string }, extra: HubOptions = {}): HubOptions & { env: NodeJS.ProcessEnv } {
  const home = join(root, `home${n++}`);
  return { progress: false, ...extra, env: { HF_HOME: home, HF_ENDPOINT: hub.url, HF_TOKEN: 'hf_secret', ...(extra.env ?? {}) } };
}

test('downloads into the huggingface_hub cache layout, which Python reads back', async () => {
  const hub = await new FakeHub(REPOS).start();
  try {
    const o = opts(hub);
    const snap = await resolveHubModel('google/vit-tiny', o);
    const repoDir = join(o.env.HF_HOME!, 'hub', 'models--google--vit-tiny');
    assert.equal(snap.commit, C2);
    assert.equal(snap.dir, join(repoDir, 'snapshots', C2));
    assert.deepEqual(snap.weights, ['model.safetensors']);
    assert.equal(readFileSync(join(repoDir, 'refs', 'main'), 'utf8'), C2);
    const oid = createHash('sha256').update(st('a', 2)).digest('hex');
    assert.equal(readlinkSync(join(snap.dir, 'model.safetensors')), join('..', '..', 'blobs', oid));
    assert.ok(lstatSync(join(snap.dir, 'config.json')).isSymbolicLink());
    assert.equal(JSON.parse(readFileSync(join(snap.dir, 'config.json'), 'utf8')).v, 2);
    assert.equal(readFileSync(join(snap.dir, 'preprocessor_config.json'), 'utf8'), '{"size":224}');
    const blobs = readdirSync(join(repoDir, 'blobs'));
    assert.equal(blobs.length, 3);
    assert.ok(blobs.includes(oid) && !blobs.some((b) => b.endsWith('.incomplete') || b.includes('"') || b.startsWith('W/')));
    // The token goes to the hub, never to the CDN.
    assert.ok(hub.log.filter((l) => l.url.includes('/resolve/')).every((l) => l.auth === 'Bearer hf_secret'));
    assert.ok(hub.log.filter((l) => l.url.startsWith('/cdn/')).every((l) => l.auth === undefined));
    // Files after the first are fetched at the pinned commit.
    assert.ok(hub.log.some((l) => l.url.includes(`/resolve/${C2}/model.safetensors`)));
  } finally {
    await hub.stop();
  }
});

test('a cached model opens without the network, online or offline', async () => {
  const hub = await new FakeHub(REPOS).start();
  const o = opts(hub);
  await resolveHubModel('google/vit-tiny', o);
  await hub.stop();
  const again = await resolveHubModel('google/vit-tiny', o);
  assert.equal(again.commit, C2, 'server down: falls back to the cache, as huggingface_hub does');
  const off = await resolveHubModel('google/vit-tiny', { ...o, offline: true });
  assert.equal(off.dir, again.dir);
  const envOff = await resolveHubModel('google/vit-tiny', { ...o, env: { ...o.env, HF_HUB_OFFLINE: '1' } });
  assert.equal(envOff.dir, again.dir);
});

test('a commit sha already cached needs no request at all', async () => {
  const hub = await new FakeHub(REPOS).start();
  try {
    const o = opts(hub);
    await resolveHubModel(`google/vit-tiny@${C2}`, o);
    const before = hub.log.length;
    const snap = await resolveHubModel('google/vit-tiny', { ...o, revision: C2 });
    assert.equal(snap.dir.endsWith(C2), true);
    assert.equal(hub.log.length, before);
  } finally {
    await hub.stop();
  }
});

test('offline with nothing cached: a one-line error saying what is missing and how to get it', async () => {
  const o = opts({ url: 'http://127.0.0.1:9' });
  await rejectsUser(() => resolveHubModel('google/vit-tiny', { ...o, offline: true }), 'google/vit-tiny', /revision main is not in the Hugging Face cache/, 'huggingface-cli download google/vit-tiny', /drop --offline/);
  await rejectsUser(() => resolveHubModel('google/vit-tiny', { ...o, env: { ...o.env, HF_HUB_OFFLINE: 'true' } }), /unset HF_HUB_OFFLINE/);
  // refs present but the weights never arrived
  const repoDir = join(o.env.HF_HOME!, 'hub', 'models--google--vit-tiny');
  mkdirSync(join(repoDir, 'refs'), { recursive: true });
  mkdirSync(join(repoDir, 'snapshots', C1), { recursive: true });
  writeFileSync(join(repoDir, 'refs', 'main'), C1);
  await rejectsUser(() => resolveHubModel('google/vit-tiny', { ...o, offline: true }), /google\/vit-tiny@main: model weights .* are not in the Hugging Face cache/, 'huggingface-cli download');
});

test('revision by tag and by sha', async () => {
  const hub = await new FakeHub(REPOS).start();
  try {
    const o = opts(hub);
    const tag = await resolveHubModel('google/vit-tiny@v1.0', o);
    assert.equal(tag.commit, C1);
    assert.equal(tag.revision, 'v1.0');
    const repoDir = join(o.env.HF_HOME!, 'hub', 'models--google--vit-tiny');
    assert.equal(readFileSync(join(repoDir, 'refs', 'v1.0'), 'utf8'), C1);
    assert.ok(!existsSync(join(repoDir, 'refs', 'main')));
    assert.equal(JSON.parse(readFileSync(join(tag.dir, 'config.json'), 'utf8')).v, 1);
    assert.ok(existsSync(join(repoDir, '.no_exist', C1, 'preprocessor_config.json')), 'a 404 is recorded as huggingface_hub does');
    const bySha = await resolveHubModel('google/vit-tiny', { ...o, revision: C2 });
    assert.equal(bySha.commit, C2);
    assert.ok(!existsSync(join(repoDir, 'refs', C2)), 'no ref is written for a sha');
    await rejectsUser(() => resolveHubModel('google/vit-tiny@v9', o), /revision v9 does not exist/);
    await rejectsUser(() => resolveHubModel('google/vit-tiny@v1.0', { ...o, revision: 'main' }), /names revision v1\.0 but --revision says main/);
  } finally {
    await hub.stop();
  }
});

test('a sharded repo fetches the index and every shard; a .bin-only repo its .bin', async () => {
  const hub = await new FakeHub(REPOS).start();
  try {
    const o = opts(hub);
    const s = await resolveHubModel('big/sharded', o);
    assert.deepEqual(s.weights, ['model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    for (const w of s.weights) assert.ok(existsSync(join(s.dir, w)), w);
    const off = await resolveHubModel('big/sharded', { ...o, offline: true });
    assert.deepEqual(off.weights, s.weights);
    const b = await resolveHubModel('old/bin-only', o);
    assert.deepEqual(b.weights, ['pytorch_model.bin']);
    await rejectsUser(() => resolveHubModel('org/no-weights', o), /org\/no-weights@main: the repository has no model\.safetensors/);
  } finally {
    await hub.stop();
  }
});

test('an interrupted download leaves only a .incomplete file, never used; a rerun completes it', async () => {
  const hub = await new FakeHub(REPOS).start();
  try {
    const o = opts(hub);
    const oid = createHash('sha256').update(st('a', 2)).digest('hex');
    hub.interrupt.add(oid);
    await rejectsUser(() => resolveHubModel('google/vit-tiny', o), 'google/vit-tiny', /download of model\.safetensors was interrupted|stopped at/, /run again/);
    const repoDir = join(o.env.HF_HOME!, 'hub', 'models--google--vit-tiny');
    assert.ok(existsSync(join(repoDir, 'blobs', `${oid}.incomplete`)));
    assert.ok(!existsSync(join(repoDir, 'blobs', oid)));
    assert.ok(!existsSync(join(repoDir, 'snapshots', C2, 'model.safetensors')));
    await rejectsUser(() => resolveHubModel('google/vit-tiny', { ...o, offline: true }), /model weights .* are not in the Hugging Face cache/);
    hub.interrupt.clear();
    const snap = await resolveHubModel('google/vit-tiny', o);
    assert.deepEqual(readFileSync(join(snap.dir, 'model.safetensors')), st('a', 2));
    assert.ok(!existsSync(join(repoDir, 'blobs', `${oid}.incomplete`)));
  } finally {
    await hub.stop();
  }
});

test('unknown repos and unreachable hubs are clear UserErrors', async () => {
  const hub = await new FakeHub(REPOS).start();
  const o = opts(hub);
  try {
    const e = await rejectsUser(() => resolveHubModel('nobody/nothing', o), /nobody\/nothing is not found or not accessible/, /HF_TOKEN/);
    assert.ok(e instanceof HubRepoNotFound);
  } finally {
    await hub.stop();
  }
  await rejectsUser(() => resolveHubModel('google/vit-tiny', o), /cannot reach http:\/\/127\.0\.0\.1:\d+/, /not in the cache/, /HF_ENDPOINT/);
  await rejectsUser(() => resolveHubModel('not-an-id', o), /not a Hugging Face model id/);
});

test('a cache written by Python huggingface_hub is used as is', async () => {
  const o = opts({ url: 'http://127.0.0.1:9' });
  const repoDir = join(o.env.HF_HOME!, 'hub', 'models--facebook--dino-vits16');
  const snap = join(repoDir, 'snapshots', C1);
  mkdirSync(snap, { recursive: true });
  mkdirSync(join(repoDir, 'blobs'));
  mkdirSync(join(repoDir, 'refs'));
  writeFileSync(join(repoDir, 'refs', 'main'), C1);
  writeFileSync(join(repoDir, 'blobs', 'abc'), st('w', 5));
  symlinkSync('../../blobs/abc', join(snap, 'model.safetensors'));
  const s = await resolveHubModel('facebook/dino-vits16', o);
  assert.equal(s.dir, snap);
  assert.deepEqual(s.weights, ['model.safetensors']);
});

test('ids, cache folder and offline flag follow huggingface_hub', () => {
  assert.deepEqual(parseHubId('google/vit-base-patch16-224'), { repoId: 'google/vit-base-patch16-224', revision: undefined });
  assert.deepEqual(parseHubId('facebook/ijepa_vith14_1k@refs/pr/3'), { repoId: 'facebook/ijepa_vith14_1k', revision: 'refs/pr/3' });
  for (const bad of ['vit', './a/b', '/abs/path', 'a/b/c', 'a--b/c', 'a/../b', 'a/b@', 'model.pth']) assert.equal(parseHubId(bad), null, bad);
  assert.equal(hubCacheDir({ HF_HUB_CACHE: '/x', HUGGINGFACE_HUB_CACHE: '/y', HF_HOME: '/z' }), '/x');
  assert.equal(hubCacheDir({ HUGGINGFACE_HUB_CACHE: '/y', HF_HOME: '/z' }), '/y');
  assert.equal(hubCacheDir({ HF_HOME: '/z', XDG_CACHE_HOME: '/c' }), join('/z', 'hub'));
  assert.equal(hubCacheDir({ XDG_CACHE_HOME: '/c' }), join('/c', 'huggingface', 'hub'));
  assert.equal(hubCacheDir({}), join(homedir(), '.cache', 'huggingface', 'hub'));
  assert.equal(hubCacheDir({ HF_HOME: '~/hf' }), join(homedir(), 'hf', 'hub'));
  assert.equal(hubOfflineFromEnv({ HF_HUB_OFFLINE: 'yes' }), true);
  assert.equal(hubOfflineFromEnv({ TRANSFORMERS_OFFLINE: '1' }), true);
  assert.equal(hubOfflineFromEnv({ HF_HUB_OFFLINE: '0' }), false);
});
