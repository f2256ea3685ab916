// The njs way of checking a JWT, written as a user would, for scripts/bench only.
// HS256: js_set + crypto.createHmac; RS256: crypto.subtle.verify behind auth_request.
import fs from 'fs';

function token(r) {
    const m = (r.headersIn.Authorization || '').match(/^Bearer\s+(\S+)$/i);
    if (!m) {
        return null;
    }
    const parts = m[1].split('.');
    return parts.length === 3 ? parts : null;
}

function claimsOk(payloadB64) {
    const claims = JSON.parse(Buffer.from(payloadB64, 'base64url').toString());
    return !(claims.exp && claims.exp <= Date.now() / 1000);
}

function hs256(r) {
    const parts = token(r);
    if (!parts) {
        return '0';
    }
    const crypto = require('crypto');
    const secret = Buffer.from(r.variables.hs_secret, 'hex');
    const sig = crypto.createHmac('sha256', secret)
        .update(parts[0] + '.' + parts[1]).digest('base64url');
    return sig === parts[2] && claimsOk(parts[1]) ? '1' : '0';
}

async function rs256(r) {
    const parts = token(r);
    if (!parts) {
        r.return(401);
        return;
    }
    const pem = fs.readFileSync(r.variables.rs_pem_path, 'utf8');
    const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const key = await crypto.subtle.importKey('spki', der,
        { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['verify']);
    const ok = await crypto.subtle.verify({ name: 'RSASSA-PKCS1-v1_5' }, key,
        Buffer.from(parts[2], 'base64url'), Buffer.from(parts[0] + '.' + parts[1]));
    r.return(ok && claimsOk(parts[1]) ? 200 : 401);
}

export default { hs256, rs256 };
