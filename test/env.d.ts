// Types for the test side. `env` and `exports` from "cloudflare:workers" are typed by the generated
// worker-configuration.d.ts (Cloudflare.Env and Cloudflare.GlobalProps.mainModule, from wrangler
// types); the Worker's own view of them, with optional secrets, is src/env.ts. Vite's ?raw imports:
declare module "*?raw" {
  const text: string;
  export default text;
}
