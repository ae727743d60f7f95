// Types for the test side: `env` and `exports` from "cloudflare:workers", and Vite's ?raw imports.
type StreamgateEnv = import("../src/env").Env;
declare namespace Cloudflare {
  interface Env extends StreamgateEnv {}
  interface GlobalProps {
    mainModule: typeof import("../src/index");
  }
}

declare module "*?raw" {
  const text: string;
  export default text;
}
