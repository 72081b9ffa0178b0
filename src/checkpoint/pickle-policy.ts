/**
 * Which globals a checkpoint's pickle may name at all. Calls are further restricted to the
 * allow-list in pickle.ts (and torch.ts); this is the outer wall: modules that exist to execute
 * code, touch files or processes, or load other code are refused as soon as a global names them,
 * as torch.load(weights_only=True) blocks os, sys, posix and nt.
 */

/**
 * Modules that exist to execute code, touch files or processes, or load other code: any global
 * in them is refused outright, whatever the opcode (a NEWOBJ stand-in would be inert, but no
 * checkpoint has a reason to name them).
 */
const BLOCKED_MODULES = new Set([
  'os', 'posix', 'nt', 'posixpath', 'ntpath', 'subprocess', '_posixsubprocess', 'sys', 'shutil', 'socket', '_socket', 'importlib',
  'pty', 'runpy', 'code', 'codeop', 'pickle', '_pickle', 'marshal', 'ctypes', '_ctypes', 'webbrowser', 'io', '_io', 'pdb', 'bdb',
  'timeit', 'profile', 'cProfile', 'trace', 'multiprocessing', 'threading', '_thread', 'signal', 'asyncio', 'tempfile', 'glob',
  'zipimport', 'pkgutil', 'imp', 'inspect', 'platform', 'commands', 'popen2', 'pip', 'setuptools', 'distutils', 'operator',
  '_operator', 'gc', 'resource', 'fcntl', 'mmap', 'urllib', 'http', 'ftplib', 'smtplib', 'telnetlib', 'xmlrpc', 'shelve', 'dbm',
  'sqlite3', 'site', 'sysconfig', 'venv', 'ensurepip', 'tkinter', 'turtle', 'idlelib', 'dill', 'cloudpickle', 'joblib',
]);

/**
 * Reached as an attribute of another module (`torch.os.system`, `numpy.sys.modules`), these are
 * refused too; other names may legitimately repeat a module's name deeper down (`mypkg.code.Net`).
 */
const BLOCKED_ATTRIBUTES = new Set([
  'os', 'posix', 'nt', 'sys', 'subprocess', 'builtins', '__builtins__', 'importlib', 'shutil', 'socket', 'pty', 'runpy', 'pickle',
  'marshal', 'ctypes', 'webbrowser',
]);

/** The builtins a checkpoint may name (types of plain data); eval, exec, getattr, open, __import__ ... are refused. */
const SAFE_BUILTINS = new Set(['set', 'frozenset', 'slice', 'complex', 'bytearray', 'bytes', 'list', 'tuple', 'dict', 'object', 'int', 'float', 'str', 'bool', 'range', 'NotImplemented', 'Ellipsis']);

/** Why naming `module.name` is refused (whatever the opcode), or null when it may be named. */
export function blockedGlobal(module: string, name: string): string | null {
  const full = `${module}.${name}`;
  const top = module.split('.')[0];
  if (BLOCKED_MODULES.has(top)) return `it names ${full}, and module ${top} is never allowed in a checkpoint`;
  if (module === 'builtins' && !SAFE_BUILTINS.has(name)) return `it names builtins.${name}, which no checkpoint needs`;
  for (const p of full.split('.').slice(1)) {
    if (BLOCKED_ATTRIBUTES.has(p)) return `it names ${full}, which reaches ${p}; no checkpoint needs that`;
  }
  // Attribute chains into dunders (`x.__globals__`, `object.__subclasses__`) are how gadgets escape.
  for (const p of name.split('.')) {
    if (p.startsWith('__') && p.endsWith('__') && p !== '__newobj__' && p !== '__newobj_ex__') {
      return `it names ${full}, a dunder attribute no checkpoint needs`;
    }
  }
  return null;
}
