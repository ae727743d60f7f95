// The floor: the least a Worker can do for an SRS hook on this machine. It answers
// every request the way streamgate allows one ({"code":0}, content-type application/json)
// without reading the body, so the benchmark can tell our own cost from the
// platform's (workerd, HTTP, the load generator) measured in the same run.
const ALLOW = '{"code":0}';

export default {
  fetch() {
    return new Response(ALLOW, { headers: { "content-type": "application/json" } });
  },
};
