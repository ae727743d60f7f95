/**
 * The play-token test vectors the README publishes (section "Play tokens"), so a backend in any
 * language can check its minting offline. Key "streamgate-test-vector-key-0123456789",
 * iat 1795621490, exp 1795625090.
 */
import readme from "../README.md?raw";

export const README_VECTORS = {
  withSub: "v2.X19kZWZhdWx0Vmhvc3RfXy9saXZlL2NhbTE.1795621490.1795625090.YWxpY2VAZXhhbXBsZS5jb20.Y7buWzeRfMud_HVasQCnNsakPidxlzPbr87VPZZrQ4M",
  noSub: "v2.X19kZWZhdWx0Vmhvc3RfXy9saXZlL2NhbTE.1795621490.1795625090.-.gegnwly9HLE8yxVbzkXNOUTP_T9PiL6szwJ2WVcaRVg",
  wholeApp: "v2.X19kZWZhdWx0Vmhvc3RfXy9saXZlLyo.1795621490.1795625090.c2Vhc29uLXBhc3MtNw.YeP50D-8ncC527DjE72oIUw-Gn7ac_-VGCsDoWzhW2I",
};

export function readmeText(): string {
  return readme;
}
