#!/usr/bin/env node
// A real OpenID provider for the gateway's browser sign-in tests: panva's oidc-provider
// (OpenID certified), configured for the gateway as a confidential relying party.
//
//   node scripts/oidc/provider.js PORT [options]
//
// Listens on 127.0.0.1:PORT with issuer http://127.0.0.1:PORT (loopback only) and prints
//   oidc-provider ready http://127.0.0.1:PORT
// on stdout once it accepts connections; then one JSON line per provider event (token grants,
// refreshes, errors, logouts) so a test can see what happened at the provider. The lines of
// token grants carry the tokens issued: this provider is for tests only.
//
// Options (each also read from the environment variable in brackets):
//   --gateway-ports P,P...  gateway ports the redirect URIs are registered for [OIDC_GW_PORTS]
//                           (default 8080): http://127.0.0.1:P<redirect-path> for each
//   --redirect-path PATH    default /oidc/callback
//   --post-logout PATH,...  paths registered as post_logout_redirect_uris on every gateway port
//                           (default /,/signed-out)
//   --at-ttl S              access token lifetime in seconds (default 3600)      [OIDC_AT_TTL]
//   --rt-ttl S              refresh token lifetime in seconds (default 86400)    [OIDC_RT_TTL]
//                           absolute: a rotated refresh token keeps the lifetime left of the
//                           one it replaces, so a session's refreshes end after S seconds
//   --id-ttl S              ID token lifetime in seconds (default 3600)          [OIDC_ID_TTL]
//   --code-ttl S            authorization code lifetime in seconds (default 60)
//   --rotate always|never   rotate the refresh token at each use (default always)
//   --jwks FILE             signing keys as a private JWK set: read if the file exists, else
//                           generated and written there (two instances can share keys)
//   --client-jwks FILE      public JWK (or JWK set) of client gateway-pkjwt: without it that
//                           client does not exist
//
// Clients (all with PKCE S256 required, grant types authorization_code and refresh_token,
// response type code; every code grant also gets a refresh token, whatever the scope):
//   gateway       secret gateway-secret, token_endpoint_auth_method client_secret_basic
//   gateway-post  secret gateway-secret, client_secret_post
//   gateway-jwt   secret gateway-secret-for-client-secret-jwt-0123456789, client_secret_jwt
//   gateway-pkjwt private_key_jwt, with the keys of --client-jwks
//   gateway-public  no secret (token_endpoint_auth_method none): PKCE only
//
// Users: login form of the library's development interactions (any password): alice and bob
// have fixed claims (sub, email, email_verified, name, groups); any other login name is a user
// with sub = that name. Then a consent page ("Continue"). Introspection and revocation are
// enabled for the clients; RP-initiated logout (end_session_endpoint) too.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import Provider from 'oidc-provider';

function usage(msg) {
  if (msg) process.stderr.write(`provider.js: ${msg}\n`);
  process.stderr.write('usage: provider.js PORT [--gateway-ports P,P] [--at-ttl S] [--rt-ttl S] '
    + '[--id-ttl S] [--code-ttl S] [--rotate always|never] [--redirect-path PATH] '
    + '[--post-logout PATH,PATH] [--jwks FILE] [--client-jwks FILE]\n');
  process.exit(2);
}

const argv = process.argv.slice(2);
const opts = {
  gatewayPorts: process.env.OIDC_GW_PORTS || '8080',
  redirectPath: '/oidc/callback',
  postLogout: '/,/signed-out',
  atTtl: process.env.OIDC_AT_TTL || '3600',
  rtTtl: process.env.OIDC_RT_TTL || '86400',
  idTtl: process.env.OIDC_ID_TTL || '3600',
  codeTtl: '60',
  rotate: 'always',
  jwks: undefined,
  clientJwks: undefined,
};
const names = {
  '--gateway-ports': 'gatewayPorts', '--redirect-path': 'redirectPath', '--post-logout': 'postLogout',
  '--at-ttl': 'atTtl', '--rt-ttl': 'rtTtl', '--id-ttl': 'idTtl', '--code-ttl': 'codeTtl',
  '--rotate': 'rotate', '--jwks': 'jwks', '--client-jwks': 'clientJwks',
};
let port;
for (let i = 0; i < argv.length; i += 1) {
  const a = argv[i];
  if (a === '-h' || a === '--help') usage();
  if (a.startsWith('--')) {
    const [flag, inline] = a.split(/=(.*)/s, 2);
    if (!names[flag]) usage(`unknown option ${flag}`);
    const v = inline !== undefined ? inline : argv[++i];
    if (v === undefined) usage(`${flag} needs a value`);
    opts[names[flag]] = v;
  } else if (port === undefined) {
    port = a;
  } else {
    usage(`unexpected argument ${a}`);
  }
}
if (!/^\d+$/.test(port || '') || +port < 1 || +port > 65535) usage('PORT missing or not a port');
const seconds = (name) => {
  const v = opts[name];
  if (!/^\d+$/.test(v) || +v < 1) usage(`${name}: not a positive number of seconds: ${v}`);
  return +v;
};
const atTtl = seconds('atTtl');
const rtTtl = seconds('rtTtl');
const idTtl = seconds('idTtl');
const codeTtl = seconds('codeTtl');
if (!['always', 'never'].includes(opts.rotate)) usage('--rotate: always or never');
const gwPorts = opts.gatewayPorts.split(',').filter(Boolean);
if (!gwPorts.length || gwPorts.some((p) => !/^\d+$/.test(p))) usage('--gateway-ports: ports separated by commas');

const issuer = `http://127.0.0.1:${port}`;

// Signing keys: one RS256 key (and one ES256), generated once per file.
function makeKeys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...rsa, kid: `rs-${randomUUID().slice(0, 8)}`, alg: 'RS256', use: 'sig' },
      { ...ec, kid: `es-${randomUUID().slice(0, 8)}`, alg: 'ES256', use: 'sig' },
    ],
  };
}
let jwks;
if (opts.jwks && existsSync(opts.jwks)) {
  jwks = JSON.parse(readFileSync(opts.jwks, 'utf8'));
} else {
  jwks = makeKeys();
  if (opts.jwks) writeFileSync(opts.jwks, JSON.stringify(jwks), { mode: 0o600 });
}

let clientJwks;
if (opts.clientJwks) {
  const k = JSON.parse(readFileSync(opts.clientJwks, 'utf8'));
  clientJwks = k.keys ? k : { keys: [k] };
}

const USERS = {
  alice: {
    email: 'alice@example.test', name: 'Alice Liddell', groups: ['staff', 'admins'],
  },
  bob: {
    email: 'bob@example.test', name: 'Bob Builder', groups: ['staff'],
  },
};

async function findAccount(ctx, sub) {
  const u = USERS[sub] || { email: `${sub}@example.test`, name: sub, groups: [] };
  return {
    accountId: sub,
    async claims() {
      return {
        sub, email: u.email, email_verified: true, name: u.name, groups: u.groups,
      };
    },
  };
}

const redirectUris = gwPorts.map((p) => `http://127.0.0.1:${p}${opts.redirectPath}`);
const postLogoutUris = gwPorts.flatMap((p) => opts.postLogout.split(',').filter(Boolean)
  .map((path) => `http://127.0.0.1:${p}${path}`));
const clientBase = {
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: redirectUris,
  post_logout_redirect_uris: postLogoutUris,
  id_token_signed_response_alg: 'RS256',
};

const configuration = {
  clients: [
    {
      ...clientBase, client_id: 'gateway', client_secret: 'gateway-secret', token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      ...clientBase, client_id: 'gateway-post', client_secret: 'gateway-secret', token_endpoint_auth_method: 'client_secret_post',
    },
    {
      ...clientBase,
      client_id: 'gateway-jwt',
      client_secret: 'gateway-secret-for-client-secret-jwt-0123456789',
      token_endpoint_auth_method: 'client_secret_jwt',
    },
    { ...clientBase, client_id: 'gateway-public', token_endpoint_auth_method: 'none' },
    ...(clientJwks ? [{
      ...clientBase, client_id: 'gateway-pkjwt', token_endpoint_auth_method: 'private_key_jwt', jwks: clientJwks,
    }] : []),
  ],
  jwks,
  findAccount,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'groups'],
  },
  // The ID token carries the claims of the granted scopes (not only sub), as most providers
  // configured for a relying party do: the gateway reads them from there.
  conformIdTokenClaims: false,
  pkce: { methods: ["S256"], required: () => true },
  cookies: { keys: ['gateway-test-provider-cookie-key'] },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
  },
  // Refresh tokens for every code grant of these clients, as Keycloak does by default. (The
  // library's default follows OpenID Connect Core: offline_access only with prompt=consent,
  // which a relying party rarely sends.)
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => opts.rotate === 'always',
  ttl: {
    AccessToken: atTtl,
    IdToken: idTtl,
    AuthorizationCode: codeTtl,
    // Absolute: a rotated token keeps what is left of its predecessor's lifetime.
    RefreshToken: (ctx) => {
      const rotated = ctx?.oidc?.entities?.RotatedRefreshToken;
      return rotated ? Math.max(rotated.remainingTTL, 1) : rtTtl;
    },
    Interaction: 600,
    Session: 86400,
    Grant: 86400,
  },
};

const provider = new Provider(issuer, configuration);

function event(name, ctx, extra = {}) {
  const line = { event: name, ...extra };
  const p = ctx?.oidc?.params;
  if (p?.grant_type) line.grant_type = p.grant_type;
  if (ctx?.oidc?.client?.clientId) line.client_id = ctx.oidc.client.clientId;
  process.stdout.write(`${JSON.stringify(line)}\n`);
}
// A test provider: the tokens it issued are printed so that a test can look for them where
// they must never be (logs) and check what reached an upstream.
provider.on('grant.success', (ctx) => {
  const b = ctx.body || {};
  event('grant.success', ctx, {
    access_token: b.access_token, refresh_token: b.refresh_token, id_token: b.id_token, expires_in: b.expires_in,
  });
});
provider.on('grant.error', (ctx, err) => event('grant.error', ctx, { error: err.error, detail: err.error_description }));
provider.on('authorization.error', (ctx, err) => event('authorization.error', ctx, { error: err.error, detail: err.error_description }));
provider.on('end_session.success', (ctx) => event('end_session.success', ctx));
provider.on('end_session.error', (ctx, err) => event('end_session.error', ctx, { error: err.error, detail: err.error_description }));
provider.on('introspection.error', (ctx, err) => event('introspection.error', ctx, { error: err.error }));
provider.on('server_error', (ctx, err) => event('server_error', ctx, { error: String(err && err.stack) }));

const server = provider.listen(+port, '127.0.0.1', () => {
  process.stdout.write(`oidc-provider ready ${issuer}\n`);
});
server.on('error', (err) => {
  process.stderr.write(`provider.js: cannot listen on 127.0.0.1:${port}: ${err.message}\n`);
  process.exit(1);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
