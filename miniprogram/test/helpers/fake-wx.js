/**
 * A scripted `wx` for api.js tests: each transport call takes the next queued reply.
 * A reply is `{result}` (event mode), `{statusCode, data}` (HTTP modes) or `{fail: {...}}`.
 */
function fakeWx(replies) {
  const queue = replies.slice();
  const calls = [];
  let codeSeq = 0;
  const take = (kind) => (opts) => {
    calls.push({ kind, opts });
    const next = queue.shift();
    if (next === undefined) throw new Error(`fake wx: no reply queued for ${kind}`);
    const reply = typeof next === 'function' ? next(opts) : next;
    if (reply.fail) opts.fail(reply.fail);
    else opts.success(reply);
  };
  const w = {
    calls,
    loginCalls: 0,
    login(opts) {
      w.loginCalls += 1;
      codeSeq += 1;
      opts.success({ code: `code-${codeSeq}` });
    },
    request: take('request'),
    uploadFile: take('uploadFile'),
    cloud: {
      callFunction: take('callFunction'),
      callHTTPFunction: take('callHTTPFunction'),
      callContainer: take('callContainer'),
      uploadFile: take('cloudUploadFile'),
    },
  };
  return w;
}

/** The envelopes, as the functions send them. */
const ok = (data) => ({ ok: true, data });
const err = (code, message, retryAfterSecs) => {
  const e = { code, message: message || code };
  if (retryAfterSecs !== undefined) e.retryAfterSecs = retryAfterSecs;
  return { ok: false, error: e };
};

/** A login reply in dev mode. */
const loginReply = (token, expiresAt, user) => ({
  statusCode: 200,
  data: ok({ token, expiresAt, user: user || { openid: 'o-1', role: 'user' } }),
});

module.exports = { fakeWx, ok, err, loginReply };
