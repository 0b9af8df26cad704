import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../core/errors.ts';
import { parseToml } from './toml.ts';

// Temporal's environment configuration, as its CLI and SDKs read it (docs.temporal.io, "Environment
// configuration"): a profile from a TOML file (TEMPORAL_CONFIG_FILE, else the OS config folder;
// TEMPORAL_PROFILE, else "default"), every setting overridden by its TEMPORAL_* variable. The
// project's earlier variable names stay as aliases. The TypeScript SDK in node_modules predates
// @temporalio/envconfig, hence this reading of the documented format.

/** A PEM certificate or key: a file, or the PEM itself; `setting` names where it was set, for messages. */
export type PemSource = { setting: string } & ({ path: string } | { data: string });

export interface TemporalSettings {
  address: string;
  namespace: string;
  tls?: { cert?: PemSource; key?: PemSource; ca?: PemSource; serverName?: string };
  /** The API key itself (Temporal Cloud); never printed. */
  apiKey?: string;
  /** Web UI base URL: TEMPORAL_UI_URL, else derived for Temporal Cloud. */
  uiUrl?: string;
  /** The profile the settings came from, when a config file was read. */
  profile?: string;
}

const Bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
const Path = z.string().min(1);

/** Temporal's variables and the project's older names for them (aliases). */
export const TemporalEnvSchema = z.object({
  TEMPORAL_ADDRESS: z.string().min(1).optional().describe('host:port of a Temporal frontend; unset: the embedded dev server'),
  TEMPORAL_NAMESPACE: z.string().min(1).optional().describe('the namespace (default "default")'),
  TEMPORAL_PROFILE: z.string().min(1).optional().describe('the profile in the config file (default "default")'),
  TEMPORAL_CONFIG_FILE: Path.optional().describe('the TOML config file (default ~/.config/temporalio/temporal.toml)'),
  TEMPORAL_API_KEY: z.string().min(1).optional().describe('an API key (Temporal Cloud); turns TLS on unless TEMPORAL_TLS=false'),
  TEMPORAL_TLS: Bool.optional().describe('true: TLS with the system roots; false: plaintext even with other TLS settings'),
  TEMPORAL_TLS_CLIENT_CERT_PATH: Path.optional().describe('client certificate (mTLS), PEM file'),
  TEMPORAL_TLS_CLIENT_CERT_DATA: z.string().min(1).optional().describe('client certificate (mTLS), PEM text'),
  TEMPORAL_TLS_CLIENT_KEY_PATH: Path.optional().describe('client key (mTLS), PEM file'),
  TEMPORAL_TLS_CLIENT_KEY_DATA: z.string().min(1).optional().describe('client key (mTLS), PEM text'),
  TEMPORAL_TLS_SERVER_CA_CERT_PATH: Path.optional().describe('CA to trust for the server, PEM file'),
  TEMPORAL_TLS_SERVER_CA_CERT_DATA: z.string().min(1).optional().describe('CA to trust for the server, PEM text'),
  TEMPORAL_TLS_SERVER_NAME: z.string().min(1).optional().describe('the name the server certificate is for, when not the address'),
  TEMPORAL_UI_URL: z.url({ protocol: /^https?$/ }).optional().describe('web UI of a remote cluster, for links in `run` and `status`'),
  // Older names, kept working.
  TEMPORAL_TLS_CERT: Path.optional().describe('alias of TEMPORAL_TLS_CLIENT_CERT_PATH'),
  TEMPORAL_TLS_KEY: Path.optional().describe('alias of TEMPORAL_TLS_CLIENT_KEY_PATH'),
  TEMPORAL_TLS_CA: Path.optional().describe('alias of TEMPORAL_TLS_SERVER_CA_CERT_PATH'),
  TEMPORAL_API_KEY_ENV: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a variable name').optional().describe('the name of a variable holding the API key'),
});
type TemporalEnv = z.infer<typeof TemporalEnvSchema>;

const ProfileSchema = z.object({
  address: z.string().min(1).optional(),
  namespace: z.string().min(1).optional(),
  api_key: z.string().min(1).optional(),
  tls: z
    .object({
      disabled: z.boolean().optional(),
      client_cert_path: Path.optional(),
      client_cert_data: z.string().min(1).optional(),
      client_key_path: Path.optional(),
      client_key_data: z.string().min(1).optional(),
      server_ca_cert_path: Path.optional(),
      server_ca_cert_data: z.string().min(1).optional(),
      server_name: z.string().min(1).optional(),
      disable_host_verification: z.literal(false, { error: 'true is not supported by the TypeScript SDK' }).optional(),
    })
    .strict()
    .optional(),
});
type Profile = z.infer<typeof ProfileSchema>;

/** Where Temporal's tools look for the config file when TEMPORAL_CONFIG_FILE is unset. */
function defaultConfigFile(vars: NodeJS.ProcessEnv): string | undefined {
  if (process.platform === 'darwin' && vars.HOME) return join(vars.HOME, 'Library', 'Application Support', 'temporalio', 'temporal.toml');
  if (process.platform === 'win32') return vars.APPDATA ? join(vars.APPDATA, 'temporalio', 'temporal.toml') : undefined;
  const base = vars.XDG_CONFIG_HOME || (vars.HOME ? join(vars.HOME, '.config') : undefined);
  return base ? join(base, 'temporalio', 'temporal.toml') : undefined;
}

/** The selected profile of the config file; none when no file exists and none was asked for by name. */
function loadProfile(e: TemporalEnv, vars: NodeJS.ProcessEnv): { name: string; profile: Profile } | undefined {
  const file = e.TEMPORAL_CONFIG_FILE ?? defaultConfigFile(vars);
  const name = e.TEMPORAL_PROFILE ?? 'default';
  if (!file || !existsSync(file)) {
    if (e.TEMPORAL_CONFIG_FILE) throw new ConfigError(`TEMPORAL_CONFIG_FILE: no file at ${file}`, { hint: 'fix the path, or unset it' });
    if (e.TEMPORAL_PROFILE) throw new ConfigError(`TEMPORAL_PROFILE=${name}: there is no config file (${file ?? 'no home folder'})`, { hint: 'set TEMPORAL_CONFIG_FILE, or unset TEMPORAL_PROFILE' });
    return undefined;
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read the Temporal config file: ${(err as Error).message}`, { where: file, hint: 'fix its permissions, or set TEMPORAL_CONFIG_FILE to another file' });
  }
  const profiles = parseToml(text, file).profile;
  const raw = typeof profiles === 'object' ? profiles[name] : undefined;
  if (raw === undefined || typeof raw !== 'object') {
    if (!e.TEMPORAL_PROFILE) return undefined;
    const known = typeof profiles === 'object' ? Object.keys(profiles) : [];
    throw new ConfigError(`TEMPORAL_PROFILE=${name}: no [profile.${name}] in the config file`, {
      where: file,
      hint: known.length ? `use one of: ${known.join(', ')}` : 'add the profile (`temporal config set --profile ...`), or unset TEMPORAL_PROFILE',
    });
  }
  const parsed = ProfileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`profile "${name}": ${[...issue.path].join('.')}: ${issue.message}`, { where: file, hint: 'fix the profile in the file' });
  }
  return { name, profile: parsed.data };
}

/** One setting given under two names (a variable and its alias) must agree. */
function either(a: [string, string | undefined], b: [string, string | undefined]): [string, string] | undefined {
  if (a[1] !== undefined && b[1] !== undefined && a[1] !== b[1]) {
    throw new ConfigError(`${a[0]} and ${b[0]} are both set, to different values`, { hint: `they are the same setting: unset ${b[0]}` });
  }
  if (a[1] !== undefined) return [a[0], a[1]];
  return b[1] !== undefined ? [b[0], b[1]] : undefined;
}

/** A PEM from the environment, else from the profile; a path and PEM text for the same thing is refused. */
function pem(
  envPath: [string, string | undefined] | undefined,
  envData: [string, string | undefined],
  filePath: [string, string | undefined],
  fileData: [string, string | undefined],
): PemSource | undefined {
  const pick = (path: [string, string | undefined] | undefined, data: [string, string | undefined]): PemSource | undefined => {
    if (path?.[1] !== undefined && data[1] !== undefined) {
      throw new ConfigError(`${path[0]} and ${data[0]} are both set`, { hint: 'give the file or the PEM text, not both' });
    }
    if (path?.[1] !== undefined) return { setting: path[0], path: path[1] };
    return data[1] !== undefined ? { setting: data[0], data: data[1] } : undefined;
  };
  return pick(envPath, envData) ?? pick(filePath, fileData);
}

/** Temporal Cloud's web UI serves every namespace; a self-hosted cluster's UI is only known if given. */
function cloudUiUrl(address: string): string | undefined {
  const host = address.replace(/:\d+$/, '').toLowerCase();
  return host.endsWith('.tmprl.cloud') || host.endsWith('.api.temporal.io') ? 'https://cloud.temporal.io' : undefined;
}

/**
 * The namespace, and the remote cluster's settings: none for the embedded dev server (no address in
 * the environment or the profile).
 */
export function temporalSettings(e: TemporalEnv, vars: NodeJS.ProcessEnv): { namespace: string; remote?: TemporalSettings } {
  const loaded = loadProfile(e, vars);
  const p = loaded?.profile ?? {};
  const t = p.tls ?? {};
  const fileKey = (k: string) => `${loaded ? `profile.${loaded.name}.` : ''}${k}`;
  const namespace = e.TEMPORAL_NAMESPACE ?? p.namespace ?? 'default';
  const address = e.TEMPORAL_ADDRESS ?? p.address;
  if (!address) return { namespace };

  const fromEnvName = e.TEMPORAL_API_KEY_ENV;
  const keyFromNamedVar = fromEnvName ? vars[fromEnvName] || undefined : undefined;
  if (fromEnvName && !keyFromNamedVar && !e.TEMPORAL_API_KEY) {
    throw new ConfigError(`TEMPORAL_API_KEY_ENV names ${fromEnvName}, which is unset or empty`, { hint: `set ${fromEnvName} to the API key, or use TEMPORAL_API_KEY` });
  }
  if (e.TEMPORAL_API_KEY && keyFromNamedVar && e.TEMPORAL_API_KEY !== keyFromNamedVar) {
    throw new ConfigError(`TEMPORAL_API_KEY and the variable TEMPORAL_API_KEY_ENV names (${fromEnvName}) hold different keys`, { hint: 'unset TEMPORAL_API_KEY_ENV' });
  }
  const apiKey = e.TEMPORAL_API_KEY ?? keyFromNamedVar ?? p.api_key;

  const cert = pem(
    either(['TEMPORAL_TLS_CLIENT_CERT_PATH', e.TEMPORAL_TLS_CLIENT_CERT_PATH], ['TEMPORAL_TLS_CERT', e.TEMPORAL_TLS_CERT]),
    ['TEMPORAL_TLS_CLIENT_CERT_DATA', e.TEMPORAL_TLS_CLIENT_CERT_DATA],
    [fileKey('tls.client_cert_path'), t.client_cert_path],
    [fileKey('tls.client_cert_data'), t.client_cert_data],
  );
  const key = pem(
    either(['TEMPORAL_TLS_CLIENT_KEY_PATH', e.TEMPORAL_TLS_CLIENT_KEY_PATH], ['TEMPORAL_TLS_KEY', e.TEMPORAL_TLS_KEY]),
    ['TEMPORAL_TLS_CLIENT_KEY_DATA', e.TEMPORAL_TLS_CLIENT_KEY_DATA],
    [fileKey('tls.client_key_path'), t.client_key_path],
    [fileKey('tls.client_key_data'), t.client_key_data],
  );
  const ca = pem(
    either(['TEMPORAL_TLS_SERVER_CA_CERT_PATH', e.TEMPORAL_TLS_SERVER_CA_CERT_PATH], ['TEMPORAL_TLS_CA', e.TEMPORAL_TLS_CA]),
    ['TEMPORAL_TLS_SERVER_CA_CERT_DATA', e.TEMPORAL_TLS_SERVER_CA_CERT_DATA],
    [fileKey('tls.server_ca_cert_path'), t.server_ca_cert_path],
    [fileKey('tls.server_ca_cert_data'), t.server_ca_cert_data],
  );
  if (!cert !== !key) {
    const [given, missing] = cert ? [cert.setting, 'TEMPORAL_TLS_CLIENT_KEY_PATH'] : [key!.setting, 'TEMPORAL_TLS_CLIENT_CERT_PATH'];
    throw new ConfigError(`${given} is set but its pair is not`, { hint: `mTLS needs both the client certificate and its key: set ${missing} too` });
  }
  const serverName = e.TEMPORAL_TLS_SERVER_NAME ?? t.server_name;
  // As Temporal's own tools decide: an explicit switch wins; else a [tls] table, any TLS material or an
  // API key turns TLS on.
  const explicit = e.TEMPORAL_TLS ?? (t.disabled === undefined ? undefined : !t.disabled);
  const tlsOn = explicit ?? (p.tls !== undefined || !!(cert || ca || serverName || apiKey));
  return {
    namespace,
    remote: {
      address,
      namespace,
      tls: tlsOn ? { cert, key, ca, serverName } : undefined,
      apiKey,
      uiUrl: e.TEMPORAL_UI_URL?.replace(/\/+$/, '') ?? cloudUiUrl(address),
      profile: loaded?.name,
    },
  };
}
