// An attacker's loop: `bun test/support/swapper.ts <a> <b> <ms>` swaps the names <a> and <b>
// atomically (renameat2 with RENAME_EXCHANGE, through libc) as fast as it can for <ms>
// milliseconds, then prints how many swaps it made. What a user can do in their own drive to a
// service that checks a path and then writes by name.

import { dlopen, FFIType, ptr } from "bun:ffi";

const [a, b, ms] = process.argv.slice(2);
if (!a || !b || !ms) throw new Error("usage: bun test/support/swapper.ts <a> <b> <ms>");

const libc = dlopen("libc.so.6", {
  renameat2: { args: [FFIType.i32, FFIType.ptr, FFIType.i32, FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
});
const AT_FDCWD = -100;
const RENAME_EXCHANGE = 2;
const first = Buffer.from(`${a}\0`);
const second = Buffer.from(`${b}\0`);

let swaps = 0;
const until = Date.now() + Number(ms);
while (Date.now() < until) {
  if (libc.symbols.renameat2(AT_FDCWD, ptr(first), AT_FDCWD, ptr(second), RENAME_EXCHANGE) === 0) swaps++;
  // Leave the other core some time now and then: the service under attack must get to run.
  if (swaps % 200 === 0) Bun.sleepSync(1);
}
// Leave the names as they were found, so the test can look at both folders afterwards.
if (swaps % 2 === 1) libc.symbols.renameat2(AT_FDCWD, ptr(first), AT_FDCWD, ptr(second), RENAME_EXCHANGE);
process.stdout.write(`${swaps}\n`);
