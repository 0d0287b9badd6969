// Sends a JSON body of SIZE bytes to URL with Node's fetch and prints the answer as
// `STATUS BODY` (or the error, with exit code 1). Used by tests/suite/oversized.rs.
const [url, size] = process.argv.slice(2);
const body = JSON.stringify({ name: 'big', type: 'noop', payload: { blob: 'x'.repeat(Number(size)) } });
try {
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
  console.log(`${res.status} ${await res.text()}`);
} catch (error) {
  console.log(`error ${error.cause?.code ?? error.message}`);
  process.exit(1);
}
