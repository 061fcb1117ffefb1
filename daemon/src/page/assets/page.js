// The channel page's one script (served by the daemon; no framework, nothing
// from another site). It trusts nothing the server rendered: it follows the
// page's event stream, recomputes the transcript's hash chain with WebCrypto
// SHA-256 over RFC 8785 canonical JSON, checks the server's signed heads with
// WebCrypto Ed25519, checks the builtin games' commitments once revealed,
// and shows every entry again from the data it verified, as text only.
// docs/page.md says what each check proves.
'use strict';

(() => {
  const enc = new TextEncoder();

  // RFC 8785: JSON.stringify's strings and numbers (ECMAScript's number
  // serialisation is the one the RFC prescribes), object keys sorted by
  // UTF-16 code units (the default sort order of JavaScript strings).
  function canonical(v) {
    if (v === null || typeof v !== 'object') {
      if (typeof v === 'number' && !Number.isFinite(v)) {
        throw new Error('a number that JSON cannot hold');
      }
      return JSON.stringify(v);
    }
    if (Array.isArray(v)) return '[' + v.map(canonical).join(',') + ']';
    const keys = Object.keys(v).sort();
    return '{' + keys.map((k) => JSON.stringify(k) + ':' + canonical(v[k])).join(',') + '}';
  }

  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  const unhex = (h) => {
    if (!/^([0-9a-f]{2})*$/.test(h)) throw new Error('not lowercase hex');
    return Uint8Array.from(h.match(/../g) || [], (x) => parseInt(x, 16));
  };
  const b64u = (s) => {
    const t = s.replace(/-/g, '+').replace(/_/g, '/');
    return Uint8Array.from(atob(t + '='.repeat((4 - (t.length % 4)) % 4)), (c) => c.charCodeAt(0));
  };
  async function sha256(bytes) {
    return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  }
  const sha256hex = async (text) => hex(await sha256(enc.encode(text)));

  // Exposed for the browser tests (compared with the daemon's canonical JSON).
  window.mcpmpCanonical = canonical;

  const body = document.body;
  const channel = body.dataset.channel;
  if (!channel) return;
  const statusEl = document.getElementById('verify-status');
  const claimsEl = document.getElementById('claims');
  const list = document.getElementById('transcript');
  const live = document.getElementById('live');
  // A closed channel takes no more posts: the page says so rather than "Live".
  let closed = body.dataset.closed === '1';
  function showLive() {
    if (closed) {
      live.textContent = 'Closed: no more posts or joins. This transcript is final.';
    } else {
      live.textContent = 'Live: new messages appear as they are written.';
    }
    live.className = 'note ok';
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // ---- the words of a message (the same as the server's rendering) ----

  const onOff = (b) => (b ? 'on' : 'off');
  function eventWords(b) {
    switch (b && b.type) {
      case 'channel:created':
        return `channel \u201c${b.name}\u201d created with slots ${(b.slots || []).map((s) => s.label).join(', ')}; bot network ${onOff(b.allow_network)}.`;
      case 'channel:renamed': return `channel renamed to \u201c${b.name}\u201d.`;
      case 'channel:closed': return 'channel closed: no more posts or joins.';
      case 'seat:filled': return `${b.slot} joined.`;
      case 'seat:moved': return `${b.slot}'s seat moved to another connection (rejoin token).`;
      case 'seat:kicked': return `${b.slot} was removed from their seat by the admin.`;
      case 'bot:attach':
        return `bot ${b.bot_id} attached: ${b.origin === 'builtin' ? 'builtin ' : b.origin === 'custom' ? 'custom code ' : ''}\u201c${b.name}\u201d, code ${b.code_hash}, network ${onOff(b.network)}.`;
      case 'bot:manifest': return `${b.bot_id} is \u201c${b.name}\u201d version ${b.version}: ${b.summary}`;
      case 'bot:error': return `${b.bot_id} failed on #${b.seq}: ${b.reason}`;
      case 'bot:state': return `${b.bot_id} changed its state without posting.`;
      case 'bot:reveal':
        return `${b.bot_id}'s seed revealed at close: ${b.seed}; it must open the seed commitment of its attach.`;
      default: return JSON.stringify(b);
    }
  }

  function words(m) {
    if (!('body' in m)) {
      return { text: `Private message; its body is hidden from you. The chain covers it as ${m.body_hash}.` };
    }
    const b = m.body;
    if (m.kind === 'user') {
      return typeof b === 'string' ? { text: b } : { tag: 'JSON', data: JSON.stringify(b) };
    }
    if (m.kind === 'bot') {
      if (!b || typeof b !== 'object' || typeof b.type !== 'string' || !('data' in b)) {
        return { data: JSON.stringify(b) };
      }
      const d = b.data;
      if (typeof d === 'string') return { tag: b.type, text: d };
      if (d && typeof d === 'object' && !Array.isArray(d)) {
        const rest = Object.assign({}, d);
        let text;
        if (typeof rest.text === 'string') {
          text = rest.text;
          delete rest.text;
        }
        return { tag: b.type, text, data: Object.keys(rest).length ? JSON.stringify(rest) : undefined };
      }
      return { tag: b.type, data: JSON.stringify(d) };
    }
    return { text: eventWords(b) };
  }

  function render(m, verified) {
    const li = el('li', `msg msg-${m.kind}` + (m.to ? ' private' : ''));
    li.id = `m-${m.seq}`;
    li.dataset.seq = String(m.seq);
    if (!verified) li.classList.add('unverified');
    const w = words(m);
    const meta = el('div', 'meta');
    meta.append(el('span', 'seq', `#${m.seq}`), ' ', el('span', 'sender', m.sender));
    if (w.tag) meta.append(' ', el('span', 'tag', w.tag));
    if (m.to) meta.append(' ', el('span', 'to', `private to ${m.to.join(', ')}`));
    if (m.cause !== undefined) meta.append(' ', el('span', 'cause', `after #${m.cause}`));
    if (!verified) meta.append(' ', el('span', 'unverified-tag', 'not verified'));
    const time = el('time', null, String(m.ts).slice(11, 19));
    time.dateTime = m.ts;
    meta.append(' ', time);
    li.append(meta);
    if (w.text !== undefined) li.append(el('p', 'text', w.text));
    if (w.data !== undefined) li.append(el('pre', 'data', w.data));
    const old = document.getElementById(li.id);
    if (old) old.replaceWith(li);
    else list.append(li);
    const count = document.getElementById('count');
    if (count) count.textContent = String(list.children.length);
  }

  // ---- the hash chain ----

  const chain = { prev: new Uint8Array(32), seq: 0, hashes: [null], broken: null };
  const heads = { key: null, keys: null, refetched: false, pending: [], signedUpTo: 0, valid: [], bad: null };

  async function entryOf(m) {
    const e = { seq: m.seq, channel_id: channel, sender: m.sender, kind: m.kind, ts: m.ts };
    if (m.to === undefined) {
      if (!('body' in m)) throw new Error('no body');
      e.body = m.body;
    } else if (typeof m.body_hash === 'string') {
      e.to = m.to;
      e.body_hash = m.body_hash;
    } else if ('body' in m && typeof m.body_salt === 'string') {
      e.to = m.to;
      e.body_hash = 'sha256:' + (await sha256hex(m.body_salt + ':' + canonical(m.body)));
    } else {
      throw new Error('a private message without body_hash or body_salt');
    }
    if (m.cause !== undefined) e.cause = m.cause;
    if (m.state_hash !== undefined) e.state_hash = m.state_hash;
    return e;
  }

  async function link(m) {
    const text = enc.encode(canonical(await entryOf(m)));
    const buf = new Uint8Array(32 + text.length);
    buf.set(chain.prev, 0);
    buf.set(text, 32);
    return sha256(buf);
  }

  function showStatus() {
    statusEl.classList.remove('pending', 'ok', 'bad');
    if (chain.broken) {
      statusEl.classList.add('bad');
      statusEl.textContent = `Broken at seq ${chain.broken.seq}: ${chain.broken.why} Entries from there on are not verified.`;
      return;
    }
    if (heads.bad) {
      statusEl.classList.add('bad');
      statusEl.textContent = `Broken at seq ${heads.bad.seq}: ${heads.bad.why}`;
      return;
    }
    if (chain.seq === 0) {
      statusEl.classList.add('pending');
      statusEl.textContent = 'Checking…';
      return;
    }
    if (heads.signedUpTo === 0) {
      // The chain alone shows the record is consistent, not that this
      // server kept it: not "verified" until a signature covers it.
      statusEl.classList.add('pending');
      statusEl.textContent = `Checking: your browser recomputed the hash chain up to seq ${chain.seq}; waiting for the server's signed head to check its signature.`;
      return;
    }
    const n = heads.signedUpTo;
    statusEl.classList.add('ok');
    let t = `Verified up to seq ${n}: your browser recomputed the hash chain of every entry from seq 1, and the server's Ed25519 signature (key ${heads.key.slice(0, 23)}…) covers seq ${n}.`;
    if (chain.seq > n) {
      t += ` Seq ${n + 1} to ${chain.seq}: the chain holds; their signed head is on its way.`;
    }
    statusEl.textContent = t;
  }

  async function verify(m) {
    if (chain.broken) return false;
    if (m.seq !== chain.seq + 1) {
      chain.broken = { seq: chain.seq + 1, why: `the stream skipped to seq ${m.seq}.` };
      return false;
    }
    let h;
    try {
      h = await link(m);
    } catch (err) {
      chain.broken = { seq: m.seq, why: `the entry cannot be hashed (${err.message}).` };
      return false;
    }
    if (hex(h) !== m.hash) {
      chain.broken = { seq: m.seq, why: 'its recomputed hash differs from the one the server recorded: the entry was changed after it was written.' };
      return false;
    }
    chain.prev = h;
    chain.seq = m.seq;
    chain.hashes[m.seq] = m.hash;
    return true;
  }

  // ---- the server's signed heads ----

  const HEAD_TAG = 'mcp-multiplayer/signed-head/v1\n';

  // The daemon's key list, fetched once, and again when a head names a key
  // it does not hold (the daemon may have started with a new key since).
  async function keyList(keyId) {
    if (!heads.keys || (keyId && !heads.keys.some((k) => k.key_id === keyId) && !heads.refetched)) {
      heads.refetched = !!heads.keys;
      const r = await fetch('/.well-known/mcp-multiplayer/keys.json', { credentials: 'omit' });
      if (!r.ok) throw new Error(`cannot be checked: the key list answered ${r.status}`);
      heads.keys = (await r.json()).keys || [];
    }
    return heads.keys;
  }

  // Whether `h` is validly signed by a key of `keys` (the key list's
  // entries): the key is listed, hashes to its id, was in its period, and
  // the Ed25519 signature covers the tag and the head's canonical JSON.
  // Throws, saying why, when it is not.
  async function headSigned(h, keys) {
    const k = keys.find((x) => x.key_id === h.key_id);
    if (!k || k.algorithm !== 'Ed25519') throw new Error(`names the key ${h.key_id}, which the server does not list`);
    const raw = b64u(k.public_key);
    if ('sha256:' + hex(await sha256(raw)) !== h.key_id) throw new Error('names a listed key that does not hash to its id');
    if (h.time < k.valid_from || (k.valid_until && h.time > k.valid_until)) {
      throw new Error("was signed outside its key's period");
    }
    const key = await crypto.subtle.importKey('jwk', { kty: 'OKP', crv: 'Ed25519', x: k.public_key }, { name: 'Ed25519' }, false, ['verify']);
    const signed = HEAD_TAG + canonical({ channel_id: h.channel_id, head_hash: h.head_hash, key_id: h.key_id, seq: h.seq, time: h.time });
    let ok = false;
    try {
      ok = await crypto.subtle.verify({ name: 'Ed25519' }, key, b64u(h.signature), enc.encode(signed));
    } catch (err) {
      ok = false;
    }
    if (!ok) throw new Error(`has an Ed25519 signature that does not verify (key ${h.key_id.slice(0, 23)}…)`);
    return true;
  }
  // Exposed for the browser tests (forged heads must fail).
  window.mcpmpHeadSigned = headSigned;

  async function checkHead(h) {
    if (h.channel_id !== channel) throw new Error('is for another channel');
    if (chain.hashes[h.seq] !== h.head_hash) throw new Error('signs a head hash that is not the chain hash at that seq');
    await headSigned(h, await keyList(h.key_id));
    heads.key = h.key_id;
    heads.signedUpTo = Math.max(heads.signedUpTo, h.seq);
    heads.valid.push(h.seq);
  }

  async function drainHeads() {
    const later = [];
    for (const h of heads.pending) {
      if (heads.bad || chain.broken) break;
      if (h.seq > chain.seq) {
        later.push(h);
        continue;
      }
      try {
        await checkHead(h);
      } catch (err) {
        // As `mcp-multiplayer verify` names it (docs/transcripts.md, "The
        // first bad seq"): the seq after the last valid head before this
        // one, since nothing after that head is vouched for.
        const last = heads.valid.reduce((p, s) => (s < h.seq && s > p ? s : p), 0);
        const since = last ? ` The last valid head covers seq ${last}.` : ' No valid head comes before it.';
        heads.bad = { seq: last + 1, why: `the server's signed head at seq ${h.seq} ${err.message}.${since}` };
      }
    }
    heads.pending = later;
  }

  // ---- the builtin games' commitments ----

  const games = new Map(); // sender -> state
  const CARD = /^[A2-9TJQK][SHDC]$/;

  function claim(id, text, state) {
    let li = document.getElementById(id);
    if (!li) {
      li = el('li');
      li.id = id;
      claimsEl.append(li);
    }
    li.className = `claim ${state}`;
    li.textContent = text;
  }

  function cardsIn(d, out) {
    if (Array.isArray(d)) d.forEach((x) => cardsIn(x, out));
    else if (d && typeof d === 'object') {
      for (const [k, v] of Object.entries(d)) {
        if (k === 'deck') continue;
        if ((k === 'card' || k === 'dealer_up') && typeof v === 'string' && CARD.test(v)) out.push(v);
        else cardsIn(v, out);
      }
    } else if (typeof d === 'string' && CARD.test(d)) out.push(d);
  }

  async function deriveDeck(seed) {
    const deck = [];
    for (const s of 'SHDC') for (const r of 'A23456789TJQK') deck.push(r + s);
    for (let i = 51; i >= 1; i--) {
      const j = Number(BigInt('0x' + (await sha256hex(`${seed}:${i}`))) % BigInt(i + 1));
      [deck[i], deck[j]] = [deck[j], deck[i]];
    }
    return deck;
  }

  async function game(m) {
    if (m.kind !== 'bot' || !m.body || typeof m.body !== 'object') return;
    const { type, data } = m.body;
    if (!data || typeof data !== 'object') return;
    const g = games.get(m.sender) || { hints: [], hands: new Map() };
    games.set(m.sender, g);
    const who = m.sender;
    if (type === 'commit' && typeof data.commitment === 'string' && data.hand === undefined) {
      g.guess = { commitment: data.commitment, seq: m.seq };
      claim(`claim-${who}-guess`, `${who} committed to its secret number at seq ${m.seq}: sha256 ${data.commitment}. It is checked here when revealed.`, 'pending');
    } else if (type === 'hint' && g.guess) {
      g.hints.push({ seq: m.seq, guess: data.guess, hint: data.hint });
    } else if (type === 'reveal' && g.guess && data.target !== undefined && typeof data.nonce === 'string') {
      const opened = (await sha256hex(`${data.target}|${data.nonce}`)) === g.guess.commitment;
      const wrong = g.hints.filter((h) => h.hint !== (h.guess === data.target ? 'correct' : h.guess < data.target ? 'higher' : 'lower'));
      if (opened && wrong.length === 0) {
        claim(`claim-${who}-guess`, `Commitment checked: the reveal at seq ${m.seq} (target ${data.target}) opens the commitment made at seq ${g.guess.seq}, and all ${g.hints.length} hints follow from that target.`, 'ok');
      } else {
        claim(`claim-${who}-guess`, opened
          ? `Commitment opened, but the hint at seq ${wrong[0].seq} does not follow from target ${data.target}.`
          : `Commitment NOT opened: sha256("${data.target}|${data.nonce}") is not the commitment made at seq ${g.guess.seq}.`, 'bad');
      }
    } else if (type === 'commit' && typeof data.commitment === 'string' && data.hand !== undefined) {
      g.hands.set(data.hand, { commitment: data.commitment, seq: m.seq, cards: [] });
      claim(`claim-${who}-hand-${data.hand}`, `${who} committed to the deck of hand ${data.hand} at seq ${m.seq}: sha256 ${data.commitment}. Checked here when its seed is revealed.`, 'pending');
    } else if (type === 'reveal' && typeof data.seed === 'string' && g.hands.has(data.hand)) {
      const h = g.hands.get(data.hand);
      const id = `claim-${who}-hand-${data.hand}`;
      if ((await sha256hex(data.seed)) !== h.commitment) {
        claim(id, `Hand ${data.hand}: the revealed seed does NOT open the commitment made at seq ${h.seq}.`, 'bad');
        return;
      }
      const deck = await deriveDeck(data.seed);
      const used = deck.slice(0, data.cards_used);
      const stray = h.cards.filter((c) => !used.includes(c));
      const sameDeck = !Array.isArray(data.deck) || data.deck.join() === deck.join();
      if (sameDeck && stray.length === 0) {
        claim(id, `Deck checked: hand ${data.hand}'s seed opens the commitment made at seq ${h.seq}; the deck re-derived from it here matches, and all ${h.cards.length} cards shown were among its first ${data.cards_used}.`, 'ok');
      } else {
        claim(id, `Hand ${data.hand}: ${sameDeck ? `card ${stray[0]} was not dealt from the committed deck` : 'the revealed deck is not the one the seed derives'}.`, 'bad');
      }
    } else if (g.hands.size > 0) {
      const open = [...g.hands.values()].pop();
      cardsIn(data, open.cards);
    }
  }

  // ---- the bots' seeds ----

  // A seeded bot's attach commits to its secret seed; the close reveals it.
  // The reveal must open the commitment (sha256 of a domain tag and the 32
  // seed bytes) and carry the state salt the seed derives (the first 16
  // bytes of HMAC-SHA256(seed, "state-salt" || 0x00 || u64_be(0))).
  const SEED_TAG = 'mcp-multiplayer bot seed v1\u0000';
  const seeds = new Map(); // bot_id -> {commitment, seq}

  async function seedReveal(b, seq) {
    const a = seeds.get(b.bot_id);
    const id = `claim-${b.bot_id}-seed`;
    if (!a) {
      claim(id, `${b.bot_id} revealed a seed at seq ${seq}, but its attach committed to none.`, 'bad');
      return;
    }
    if (typeof b.seed !== 'string' || !/^[0-9a-f]{64}$/.test(b.seed)) {
      claim(id, `${b.bot_id}'s seed revealed at seq ${seq} is not 64 lowercase hex digits.`, 'bad');
      return;
    }
    const raw = unhex(b.seed);
    const tag = enc.encode(SEED_TAG);
    const pre = new Uint8Array(tag.length + raw.length);
    pre.set(tag, 0);
    pre.set(raw, tag.length);
    const opened = 'sha256:' + hex(await sha256(pre));
    const key = await crypto.subtle.importKey('raw', raw, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
    const label = enc.encode('state-salt');
    const msg = new Uint8Array(label.length + 9); // the label, 0x00, u64_be(0)
    msg.set(label, 0);
    const salt = hex(new Uint8Array(await crypto.subtle.sign('HMAC', key, msg)).slice(0, 16));
    if (opened !== a.commitment) {
      claim(id, `${b.bot_id}'s seed revealed at seq ${seq} does NOT open the seed commitment of its attach at seq ${a.seq}.`, 'bad');
    } else if (salt !== b.state_salt) {
      claim(id, `${b.bot_id}'s seed opens its commitment, but the revealed state salt is not the one the seed derives.`, 'bad');
    } else {
      claim(id, `Seed checked: ${b.bot_id}'s seed revealed at seq ${seq} opens the seed commitment of its attach at seq ${a.seq}, and its state salt is the one the seed derives; its hooks can now be replayed (mcp-multiplayer replay).`, 'ok');
    }
  }

  // ---- the bots' code hashes ----

  const attached = new Map(); // bot_id -> {code_hash, seq}
  async function checkBots() {
    for (const art of document.querySelectorAll('article.bot')) {
      const out = art.querySelector('.code-check');
      const a = attached.get(art.dataset.bot);
      const src = art.querySelector('pre.source code').textContent;
      const h = 'sha256:' + (await sha256hex(src));
      if (a && h === art.dataset.codeHash && h === a.code_hash) {
        out.textContent = `✓ the source shown hashes to this, as announced at seq ${a.seq}`;
        out.className = 'code-check ok';
      } else if (a) {
        out.textContent = '✗ the source shown does not hash to the code_hash announced in the chain';
        out.className = 'code-check bad';
      }
    }
  }

  // ---- the stream ----

  let queue = Promise.resolve();
  function onMessage(m) {
    queue = queue.then(async () => {
      if (m.seq <= chain.seq) return; // seen before a reconnect
      const ok = await verify(m);
      render(m, ok);
      if (ok) {
        if (m.kind === 'system' && m.body && m.body.type === 'bot:attach') {
          attached.set(m.body.bot_id, { code_hash: m.body.code_hash, seq: m.seq });
          if (typeof m.body.seed_commitment === 'string') {
            seeds.set(m.body.bot_id, { commitment: m.body.seed_commitment, seq: m.seq });
            claim(`claim-${m.body.bot_id}-seed`, `${m.body.bot_id} committed to its secret seed at seq ${m.seq}: ${m.body.seed_commitment}. Checked here when the channel closes and reveals it.`, 'pending');
          }
          await checkBots();
        }
        if (m.kind === 'system' && m.body && m.body.type === 'channel:closed') {
          closed = true;
          showLive();
        }
        if (m.kind === 'system' && m.body && m.body.type === 'bot:reveal') {
          await seedReveal(m.body, m.seq);
        }
        await game(m);
        await drainHeads();
      }
      showStatus();
    }).catch((err) => {
      statusEl.className = 'status bad';
      statusEl.textContent = `The check stopped: ${err.message}`;
    });
  }

  function onHead(h) {
    queue = queue.then(async () => {
      heads.pending.push(h);
      await drainHeads();
      showStatus();
    });
  }

  if (!window.crypto || !crypto.subtle) {
    statusEl.className = 'status bad';
    statusEl.textContent = 'Not checked: this browser offers no WebCrypto here (it needs https or localhost).';
    return;
  }
  statusEl.textContent = 'Checking…';
  // The head the server rendered into the page, checked like the stream's.
  const rendered = document.getElementById('verification').dataset.head;
  if (rendered) {
    try {
      heads.pending.push(JSON.parse(rendered));
    } catch (err) {
      heads.bad = { seq: 0, why: 'the page carries a signed head that is not JSON.' };
    }
  }
  const es = new EventSource(body.dataset.events);
  es.addEventListener('message', (e) => onMessage(JSON.parse(e.data)));
  es.addEventListener('head', (e) => onHead(JSON.parse(e.data)));
  es.addEventListener('revoked', () => {
    es.close();
    live.textContent = 'This link stopped working (revoked or expired): the page no longer updates.';
    live.className = 'note bad';
  });
  es.addEventListener('open', showLive);
  es.addEventListener('error', () => {
    if (es.readyState === EventSource.CLOSED) {
      live.textContent = 'The page stopped updating (the link no longer works, or the server is gone). Reload to try again.';
      live.className = 'note bad';
    } else {
      live.textContent = 'Reconnecting…';
      live.className = 'note';
    }
  });
})();
