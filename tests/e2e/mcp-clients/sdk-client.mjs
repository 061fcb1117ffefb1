// Drives mcp-multiplayer with the official TypeScript SDK, as a host would:
// connect (a bearer token, or the SDK's own OAuth flow: discovery, dynamic
// registration, PKCE, token exchange), read serverInfo, list tools and
// prompts, and call tools whose structured results the SDK validates against
// their outputSchema. Prints one JSON summary on stdout; the assertions are
// in tests/e2e/test_mcp_clients.py.
//
//   node sdk-client.mjs --sdk v1|v2 --auth token|oauth --protocol 2025-11-25|2026-07-28 --url URL [--token T]
//
// The packages are found in $MCP_CLIENTS_DIR (installed by
// tests/steps/56-mcp-clients.sh).
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const deps = process.env.MCP_CLIENTS_DIR;
if (!deps) throw new Error('MCP_CLIENTS_DIR is not set');
const req = createRequire(join(deps, 'package.json'));
const load = async (spec) => import(pathToFileURL(req.resolve(spec)).href);

let Client, StreamableHTTPClientTransport, UnauthorizedError;
if (args.sdk === 'v1') {
  ({ Client } = await load('@modelcontextprotocol/sdk/client/index.js'));
  ({ StreamableHTTPClientTransport } = await load('@modelcontextprotocol/sdk/client/streamableHttp.js'));
  ({ UnauthorizedError } = await load('@modelcontextprotocol/sdk/client/auth.js'));
} else if (args.sdk === 'v2') {
  ({ Client, StreamableHTTPClientTransport, UnauthorizedError } = await load('@modelcontextprotocol/client'));
} else {
  throw new Error(`--sdk v1 or v2, not ${args.sdk}`);
}

const url = new URL(args.url);
const summary = { sdk: args.sdk, auth: args.auth, steps: [] };

/** An OAuth client provider kept in memory; the "browser" is a fetch that
 * stops at the authorization server's redirect and hands back the code. */
class Provider {
  constructor() {
    this.info = undefined;
    this.saved = undefined;
    this.verifier = undefined;
    this.authorizationUrl = undefined;
  }
  get redirectUrl() {
    return 'http://127.0.0.1:45871/callback';
  }
  get clientMetadata() {
    return {
      client_name: `mcp-multiplayer e2e (TypeScript SDK ${args.sdk})`,
      redirect_uris: [this.redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  clientInformation() {
    return this.info;
  }
  saveClientInformation(info) {
    this.info = info;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(tokens) {
    this.saved = tokens;
  }
  redirectToAuthorization(u) {
    this.authorizationUrl = u;
  }
  saveCodeVerifier(v) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
  saveDiscoveryState(state) {
    this.discovery = state;
  }
  discoveryState() {
    return this.discovery;
  }
}

function newClient() {
  const options = { capabilities: {} };
  if (args.sdk === 'v2' && args.protocol === '2026-07-28') {
    options.versionNegotiation = { mode: { pin: '2026-07-28' } };
  }
  return new Client({ name: `e2e-ts-${args.sdk}`, version: '0.0.0' }, options);
}

function newTransport(provider) {
  const opts = {};
  if (args.auth === 'token') {
    opts.requestInit = { headers: { Authorization: `Bearer ${args.token}` } };
  } else {
    opts.authProvider = provider;
  }
  return new StreamableHTTPClientTransport(url, opts);
}

async function connect() {
  const provider = new Provider();
  let client = newClient();
  let transport = newTransport(provider);
  try {
    await client.connect(transport);
  } catch (e) {
    if (args.auth !== 'oauth' || !(e instanceof UnauthorizedError)) throw e;
    // The SDK discovered, registered and sent us to /authorize: play the
    // user's browser (approval is automatic on a loopback daemon).
    const u = provider.authorizationUrl;
    if (!u) throw new Error('no authorization URL after 401');
    summary.authorize = { params: Object.fromEntries(u.searchParams) };
    const r = await fetch(u, { redirect: 'manual' });
    const loc = new URL(r.headers.get('location'));
    const code = loc.searchParams.get('code');
    if (!code) throw new Error(`authorize answered ${r.status} ${loc}`);
    summary.authorize.redirected_to = `${loc.origin}${loc.pathname}`;
    summary.authorize.iss = loc.searchParams.get('iss');
    // v2 takes the whole callback query and checks `iss` (RFC 9207) itself;
    // v1 takes the code alone.
    await transport.finishAuth(args.sdk === 'v2' ? loc.searchParams : code);
    summary.oauth = { client_registered: Boolean(provider.info?.client_id), token_type: provider.saved?.token_type };
    client = newClient();
    transport = newTransport(provider);
    await client.connect(transport);
  }
  return { client, transport };
}

const { client, transport } = await connect();
summary.protocol = client.protocolVersion ?? transport.protocolVersion ?? null;
summary.serverInfo = client.getServerVersion();
summary.capabilities = client.getServerCapabilities();

const tools = await client.listTools();
summary.tools = tools.tools.map((t) => ({ name: t.name, title: t.title, annotations: t.annotations }));

// Structured results are checked by the SDK against each tool's outputSchema
// (a mismatch throws), so every call here is also a schema check.
const call = async (name, a) => {
  const r = await client.callTool({ name, arguments: a });
  summary.steps.push({ tool: name, isError: Boolean(r.isError) });
  if (r.isError) throw new Error(`${name} failed: ${JSON.stringify(r.structuredContent ?? r.content)}`);
  return r;
};
const guess = await call('create_channel', {
  name: `guess via ${args.sdk}`, slots: ['invite:alice', 'invite:bob'], bot_preset: 'GuessBot', join_as: 'alice',
});
const cid = guess.structuredContent.channel_id;
summary.guess = { bots: guess.structuredContent.view.bots.map((b) => b.name), invites: guess.structuredContent.invites.length };
const bj = await call('create_channel', {
  name: `blackjack via ${args.sdk}`, slots: ['invite:alice', 'invite:bob'], bot_preset: 'BlackjackBot', join_as: 'alice',
});
summary.blackjack = { bots: bj.structuredContent.view.bots.map((b) => b.name) };
await call('post_message', { channel_id: cid, body: { hello: 'world' } });
const synced = await call('sync_messages', { channel_id: cid, cursor: 0, wait_ms: 30000, limit: 10000 });
summary.sync = {
  messages: synced.structuredContent.messages.length,
  more: synced.structuredContent.more,
  clamped: synced.structuredContent.clamped,
  text: synced.content.find((c) => c.type === 'text')?.text ?? '',
};
const page = await call('list_channels', { limit: 1 });
summary.list = { channels: page.structuredContent.channels.length, next_cursor: page.structuredContent.next_cursor ?? null };
const rest = await call('list_channels', { cursor: page.structuredContent.next_cursor });
summary.list.rest = rest.structuredContent.channels.length;
const code = await call('get_bot_code', { channel_id: cid, bot_id: 'bot:referee' });
summary.bot_code = { preset: code.structuredContent.preset, code_hash: code.structuredContent.code_hash };

const prompts = await client.listPrompts();
summary.prompts = prompts.prompts.map((p) => p.name);
const prompt = await client.getPrompt({ name: 'start_game', arguments: { game: 'guess', friend: 'bob' } });
summary.prompt_text = prompt.messages[0].content.text;

await client.close();
process.stdout.write(JSON.stringify(summary) + '\n');
