// Generated from docs/openrpc.json by sdk/js/scripts/generate.ts; do not edit by hand.
// Regenerate: npm run generate (in sdk/js). A test fails when this file is stale.
/* eslint-disable */

/** The protocol version the types were generated from. */
export const PROTOCOL_VERSION = "1.0";

/** Parameters of `audit.checkpoint`: A checkpoint of the audit log (sequence number and head hash) signed by the device; keep it off the terminal and check the log against it with `bifente audit verify --checkpoint FILE`. */
export type AuditCheckpointParams = Record<string, never>;

/** Result of `audit.checkpoint`. */
export type AuditCheckpointResult = {
  v: number;
  seq: number;
  hash: string;
  issued: number;
  device: string;
  signature: string;
  certificate: string;
};

/** Parameters of `clients.list`: Paired clients. */
export type ClientsListParams = {
  include_revoked?: boolean;
};

/** Result of `clients.list`. */
export type ClientsListResult = {
  clients: {
    name: string;
    /** pattern: "^[0-9a-f]{64}$" */
    fingerprint: string;
    scopes: string[];
    /** format: date-time */
    paired_at: string | null;
    /** format: date-time */
    last_seen: string | null;
    /** format: date-time */
    revoked_at: string | null;
    revoked_by: string | null;
  }[];
};

/** Parameters of `clients.revoke`: Revoke a client: refused at once. */
export type ClientsRevokeParams = {
  /** pattern: "^[A-Za-z0-9 ._-]{1,64}$" */
  name: string;
};

/** Result of `clients.revoke`. */
export type ClientsRevokeResult = {
  revoked: string;
  /** minimum: 0 */
  connections_closed: number;
};

/** Parameters of `consent.ask`: Show a question on the terminal; the patient answers OK or Cancel. */
export type ConsentAskParams = {
  /** minLength: 1; maxLength: 200 */
  text: string;
  /** minimum: 5; maximum: 60 */
  timeout?: number;
};

/** Result of `consent.ask`. */
export type ConsentAskResult = {
  answer: "ok" | "cancel" | "timeout";
};

/** Parameters of `cps.authenticate`: INTERNAL AUTHENTICATE of SHA-256(challenge) with the authentication key; needs the PIN verified for this client. A 32-byte challenge (the DMP host's shape) is refused: only the daemon logs in there. */
export type CpsAuthenticateParams = {
  /** base64 of at most 1024 bytes; encoding: base64; maxLength: 1368 */
  challenge: string;
};

/** Result of `cps.authenticate`. */
export type CpsAuthenticateResult = {
  algorithm: "sha256WithRSAEncryption";
  /** RSA PKCS#1 v1.5 signature; encoding: base64 */
  signature: string;
  /** the key's X.509 certificate (DER); encoding: base64 */
  certificate: string;
};

/** Parameters of `cps.certificates`: Both CPS certificates (signature and authentication) with their validity, without the PIN: what a CAdES/XAdES signer needs before it signs. */
export type CpsCertificatesParams = Record<string, never>;

/** Result of `cps.certificates`. */
export type CpsCertificatesResult = {
  signature: {
    /** X.509 certificate (DER); encoding: base64 */
    certificate: string;
    subject: string;
    /** format: date-time */
    not_before: string;
    /** format: date-time */
    not_after: string;
    /** outside its validity period now */
    expired: boolean;
    /** expires within 30 days */
    expires_soon: boolean;
  };
  authentication: {
    /** X.509 certificate (DER); encoding: base64 */
    certificate: string;
    subject: string;
    /** format: date-time */
    not_before: string;
    /** format: date-time */
    not_after: string;
    /** outside its validity period now */
    expired: boolean;
    /** expires within 30 days */
    expires_soon: boolean;
  };
};

/** Parameters of `cps.info`: The professional on the CPS card and the PIN tries left (no PIN needed); with certificates: true, both certificates and their validity. */
export type CpsInfoParams = {
  certificates?: boolean;
};

/** Result of `cps.info`. */
export type CpsInfoResult = {
  serial: string;
  /** minimum: 0 */
  card_type: number;
  card_type_name: string;
  /** minimum: 0 */
  id_type: number;
  national_id: string;
  name: string;
  first_name: string;
  display_name: string;
  profession: string;
  specialty: string | null;
  pin: {
    /** minimum: 0 */
    tries_left: number;
    /** minimum: 0 */
    max_tries: number;
    blocked: boolean;
  };
  /** only when asked (certificates: true) */
  certificates?: {
    signature: {
      /** X.509 certificate (DER); encoding: base64 */
      certificate: string;
      subject: string;
      /** format: date-time */
      not_before: string;
      /** format: date-time */
      not_after: string;
      /** outside its validity period now */
      expired: boolean;
      /** expires within 30 days */
      expires_soon: boolean;
    };
    authentication: {
      /** X.509 certificate (DER); encoding: base64 */
      certificate: string;
      subject: string;
      /** format: date-time */
      not_before: string;
      /** format: date-time */
      not_after: string;
      /** outside its validity period now */
      expired: boolean;
      /** expires within 30 days */
      expires_soon: boolean;
    };
  };
};

/** Parameters of `cps.logout`: End this client's verified state: the holder types the PIN again before its next signature (pin.state event with result reset). */
export type CpsLogoutParams = Record<string, never>;

/** Result of `cps.logout`. */
export type CpsLogoutResult = {
  verified: false;
};

/** Parameters of `cps.pin_state`: PIN try counters and whether the PIN is verified now for this client (a PIN typed for another client does not count: the card asks this client for its own, docs/security.md). */
export type CpsPinStateParams = Record<string, never>;

/** Result of `cps.pin_state`. */
export type CpsPinStateResult = {
  /** minimum: 0 */
  tries_left: number;
  /** minimum: 0 */
  max_tries: number;
  blocked: boolean;
  verified: boolean;
};

/** Parameters of `cps.pin_status`: PIN try counters. */
export type CpsPinStatusParams = Record<string, never>;

/** Result of `cps.pin_status`. */
export type CpsPinStatusResult = {
  /** minimum: 0 */
  tries_left: number;
  /** minimum: 0 */
  max_tries: number;
  blocked: boolean;
};

/** Parameters of `cps.sign`: Sign data with the CPS card (SHA-256, RSA PKCS#1 v1.5, split hash); needs the PIN verified for this client. The signature key (cps:sign) signs after the holder's OK on the terminal, which shows the client, the title and the digest's first hex digits; the authentication key needs cps:authenticate. */
export type CpsSignParams = {
  /** base64 of at most 778240 bytes; encoding: base64; maxLength: 1037656 */
  data: string;
  key?: "signature" | "authentication";
  /** what is signed, shown on the terminal; maxLength: 64 */
  title?: string;
};

/** Result of `cps.sign`. */
export type CpsSignResult = {
  algorithm: "sha256WithRSAEncryption";
  /** RSA PKCS#1 v1.5 signature; encoding: base64 */
  signature: string;
  /** the key's X.509 certificate (DER); encoding: base64 */
  certificate: string;
};

/** Parameters of `cps.sign_digest`: Sign a SHA-256 digest computed by the caller with the authentication key (PKCS#1 v1.5 DigestInfo); needs the PIN verified for this client and the holder's OK on the terminal (which shows the client, the title and the digest's first hex digits). The signature key signs only whole data (cps.sign: the card finishes the hash). */
export type CpsSignDigestParams = {
  /** base64 of the 32-byte SHA-256 digest; encoding: base64; minLength: 44; maxLength: 44 */
  digest: string;
  /** what is signed, shown on the terminal; maxLength: 64 */
  title?: string;
};

/** Result of `cps.sign_digest`. */
export type CpsSignDigestResult = {
  algorithm: "sha256WithRSAEncryption";
  /** encoding: base64 */
  signature: string;
  /** encoding: base64 */
  certificate: string;
};

/** Parameters of `cps.verify_pin`: The holder types the PIN on the terminal keypad; the result says ok, wrong (tries left), blocked or cancelled. No method takes a PIN. The verified PIN serves this client only: another client's call resets it (docs/security.md). */
export type CpsVerifyPinParams = {
  /** minimum: 5; maximum: 60 */
  timeout?: number;
};

/** Result of `cps.verify_pin`. */
export type CpsVerifyPinResult = {
  result: "ok" | "wrong" | "blocked" | "cancelled";
  /** minimum: 0 */
  tries_left: number;
};

/** Parameters of `display.show`: Show a message on the terminal's display (ASCII, 16 columns x 8 lines, word-wrapped); it stays until the next screen. */
export type DisplayShowParams = {
  /** minLength: 1; maxLength: 200 */
  text: string;
};

/** Result of `display.show`. */
export type DisplayShowResult = {
  /** maxItems: 8 */
  lines: string[];
};

/** Parameters of `dmp.create`: Create the patient's DMP: the patient consents on the terminal (Vitale card in); the answer holds the patient's password once (also shown on the terminal display). */
export type DmpCreateParams = {
  /** the patient's INS (15 characters: NIR or NIA with its key); pattern: "^[0-9]{6}[0-9AB][0-9]{8}$" */
  ins: string;
  /** maxLength: 64 */
  ins_oid?: string;
  express?: boolean;
};

/** Result of `dmp.create`. */
export type DmpCreateResult = {
  ins: string;
  ins_oid: string;
  status: string;
  patient_password: string;
  notice: string;
};

/** Parameters of `dmp.delete`: The author deletes a document after the patient asked for it (the entry stays, status deleted, its bytes wiped). */
export type DmpDeleteParams = {
  /** the patient's INS (15 characters: NIR or NIA with its key); pattern: "^[0-9]{6}[0-9AB][0-9]{8}$" */
  ins: string;
  /** minLength: 1; maxLength: 64 */
  document_id: string;
};

/** Result of `dmp.delete`. */
export type DmpDeleteResult = {
  /** the host's document JSON (docs/dmp-api.md) */
  document: Record<string, unknown>;
};

/** Parameters of `dmp.emergency`: Emergency access without consent: bris_de_glace or centre_15 (regulating doctors), with the professional's stated reason; then dmp.find / dmp.get from this client need no consent for this patient while it lasts (not from other clients; the patient's Cancel on the terminal ends it). */
export type DmpEmergencyParams = {
  /** the patient's INS (15 characters: NIR or NIA with its key); pattern: "^[0-9]{6}[0-9AB][0-9]{8}$" */
  ins: string;
  mode: "bris_de_glace" | "centre_15";
  /** minLength: 1; maxLength: 500 */
  reason: string;
};

/** Result of `dmp.emergency`. */
export type DmpEmergencyResult = {
  mode: string;
  reason: string;
  expires_in: number;
};

/** Parameters of `dmp.exists`: Does the patient have a DMP (no consent needed). */
export type DmpExistsParams = {
  /** the patient's INS (15 characters: NIR or NIA with its key); pattern: "^[0-9]{6}[0-9AB][0-9]{8}$" */
  ins: string;
};

/** Result of `dmp.exists`. */
export type DmpExistsResult = {
  exists: boolean;
  status: string | null;
};

/** Parameters of `dmp.feed`: Add a CDA R2 document (base64): the patient consents on the terminal; queued durably (state queued, queue_id) when the host is unreachable, delivered exactly once later. A CDA larger than one message is sent with upload.begin / chunk / commit and named by `upload_id` instead of `cda`. */
export type DmpFeedParams = Record<string, never>;

/** Result of `dmp.feed`. */
export type DmpFeedResult = {
  state: "registered" | "queued";
  /** the host's document JSON (docs/dmp-api.md) */
  document?: Record<string, unknown>;
  already_registered?: boolean;
  queue_id?: string;
};

/** Parameters of `dmp.find`: The documents this professional may see (the patient consents on the terminal, unless an emergency access is open). */
export type DmpFindParams = {
  /** the patient's INS (15 characters: NIR or NIA with its key); pattern: "^[0-9]{6}[0-9AB][0-9]{8}$" */
  ins: string;
  /** maxLength: 200 */
  type?: string;
  /** maxLength: 100 */
  status?: string;
  /** minimum: 1; maximum: 1000 */
  limit?: number;
  /** minimum: 0 */
  offset?: number;
  express?: boolean;
};

/** Result of `dmp.find`. */
export type DmpFindResult = {
  documents: Record<string, unknown>[];
  total: number;
  mode: string;
};

/** Parameters of `dmp.get`: One document and its CDA (base64), with the patient's consent or an open emergency access. */
export type DmpGetParams = {
  /** the patient's INS (15 characters: NIR or NIA with its key); pattern: "^[0-9]{6}[0-9AB][0-9]{8}$" */
  ins: string;
  /** minLength: 1; maxLength: 64 */
  document_id: string;
  express?: boolean;
};

/** Result of `dmp.get`. */
export type DmpGetResult = {
  /** the host's document JSON (docs/dmp-api.md) */
  document: Record<string, unknown>;
  /** encoding: base64 */
  cda: string;
};

/** Parameters of `dmp.patient_code`: The patient's one-time code for the DMP patient space (with the INS and the password from dmp.create): the patient consents on the terminal (Vitale card in), the code is shown on the terminal display only, never returned, logged or audited. */
export type DmpPatientCodeParams = {
  /** the patient's INS (15 characters: NIR or NIA with its key); pattern: "^[0-9]{6}[0-9AB][0-9]{8}$" */
  ins: string;
};

/** Result of `dmp.patient_code`. */
export type DmpPatientCodeResult = {
  shown: boolean;
  expires_in: number;
};

/** Parameters of `dmp.queue`: Feeds waiting for the DMP host (all: also delivered and failed ones); patients masked. */
export type DmpQueueParams = {
  all?: boolean;
};

/** Result of `dmp.queue`. */
export type DmpQueueResult = {
  feeds: {
    queue_id: string;
    patient: string;
    professional: string;
    state: string;
    attempts: number;
    last_error: string | null;
    queued_at: string;
    size: number;
    document_id: string | null;
  }[];
};

/** Parameters of `dmp.visibility`: The author changes a document's visibility (masked to professionals, hidden from the patient, from representatives, announced). */
export type DmpVisibilityParams = {
  /** the patient's INS (15 characters: NIR or NIA with its key); pattern: "^[0-9]{6}[0-9AB][0-9]{8}$" */
  ins: string;
  /** minLength: 1; maxLength: 64 */
  document_id: string;
  masked_ps?: boolean;
  invisible_patient?: boolean;
  invisible_representatives?: boolean;
  announced?: boolean;
};

/** Result of `dmp.visibility`. */
export type DmpVisibilityResult = {
  /** the host's document JSON (docs/dmp-api.md) */
  document: Record<string, unknown>;
};

/** Parameters of `events.subscribe`: Receive event notifications on this connection (all, or the ones named): card.inserted, card.removed, reader.lost (a reader failed: not a card removal), reader.restored, pin.state, terminal.cancel (Cancel pressed outside a prompt), terminal.lost, terminal.restored. Replaces an earlier subscription. */
export type EventsSubscribeParams = {
  /** maxItems: 16 */
  events?: ("card.inserted" | "card.removed" | "pin.state" | "reader.lost" | "reader.restored" | "terminal.cancel" | "terminal.lost" | "terminal.restored")[];
};

/** Result of `events.subscribe`. */
export type EventsSubscribeResult = {
  subscribed: ("card.inserted" | "card.removed" | "pin.state" | "reader.lost" | "reader.restored" | "terminal.cancel" | "terminal.lost" | "terminal.restored")[];
};

/** Parameters of `mail.list`: The professional's mailbox (POP3, nothing deleted): uid, from, the outer subject, date, size. */
export type MailListParams = Record<string, never>;

/** Result of `mail.list`. */
export type MailListResult = {
  address: string;
  messages: {
    uid: string;
    from: string;
    subject: string;
    date: string;
    size: number;
  }[];
};

/** Parameters of `mail.open`: Decrypt a message with the CPS (needs the PIN verified) and verify its signature: subject, from, signer, text, HTML, attachments (byte-identical, base64). */
export type MailOpenParams = {
  /** minLength: 1; maxLength: 70 */
  uid: string;
};

/** Result of `mail.open`. */
export type MailOpenResult = {
  uid: string;
  message_id: string | null;
  subject: string;
  from: string;
  to: string[];
  cc: string[];
  date: string | null;
  signer: {
    name: string;
    email: string | null;
    valid: boolean;
  };
  text: string | null;
  html: string | null;
  attachments: {
    filename: string;
    content_type: string;
    size: number;
    /** encoding: base64 */
    data: string;
  }[];
};

/** Parameters of `mail.send`: Sign (CPS, needs the PIN verified) and encrypt a message to every recipient and the sender, then queue it for the operator. Recipients without a directory certificate are refused before anything is signed. */
export type MailSendParams = {
  /** minItems: 1; maxItems: 100 */
  to: string[];
  /** maxItems: 100 */
  cc?: string[];
  /** maxLength: 998 */
  subject?: string;
  text?: string;
  html?: string;
  /** maxItems: 32 */
  attachments?: {
    /** minLength: 1; maxLength: 255 */
    filename: string;
    /** maxLength: 127 */
    content_type?: string;
    /** encoding: base64 */
    data: string;
  } | {
    /** minLength: 1; maxLength: 255 */
    filename: string;
    /** maxLength: 127 */
    content_type?: string;
    /** a committed upload (upload.begin / chunk / commit); pattern: "^[0-9a-f]{32}$" */
    upload_id: string;
  }[];
  /** the same key again (same client) returns the message queued the first time, never a second one; minLength: 1; maxLength: 128 */
  idempotency_key?: string;
};

/** Result of `mail.send`. */
export type MailSendResult = {
  message_id: string;
  state: "queued" | "sending" | "sent" | "failed";
};

/** Parameters of `mail.status`: Where a sent message is: queued, sending, sent or failed, with the attempts and the last error. */
export type MailStatusParams = {
  /** maxLength: 998 */
  message_id: string;
};

/** Result of `mail.status`. */
export type MailStatusResult = {
  message_id: string;
  state: "queued" | "sending" | "sent" | "failed";
  attempts: number;
  last_error: string | null;
};

/** Parameters of `pair.begin`: Start pairing: the terminal shows a 6-digit code. */
export type PairBeginParams = {
  /** pattern: "^[A-Za-z0-9 ._-]{1,64}$" */
  name: string;
  /** PEM CSR or public key; maxLength: 8192 */
  csr: string;
  /** maxItems: 10 */
  scopes?: ("identity:read" | "cps:sign" | "cps:authenticate" | "mail:send" | "mail:read" | "dmp:read" | "dmp:write" | "dmp:emergency" | "terminal:display" | "admin")[];
};

/** Result of `pair.begin`. */
export type PairBeginResult = {
  pairing_id: string;
  /** seconds; minimum: 0 */
  expires_in: number;
  /** SHA-256 of the certificate's DER, lower-case hex; pattern: "^[0-9a-f]{64}$" */
  fingerprint: string;
};

/** Parameters of `pair.complete`: Finish pairing with the code read on the terminal; returns the client certificate. */
export type PairCompleteParams = {
  /** maxLength: 64 */
  pairing_id: string;
  /** pattern: "^[0-9]{6}$" */
  code: string;
};

/** Result of `pair.complete`. */
export type PairCompleteResult = {
  /** the client certificate */
  certificate: string;
  /** the daemon's CA */
  ca_certificate: string;
  /** the daemon's certificate; pattern: "^[0-9a-f]{64}$" */
  fingerprint: string;
  scopes: string[];
};

/** Parameters of `readers.list`: Slots and what is in them. */
export type ReadersListParams = Record<string, never>;

/** Result of `readers.list`. */
export type ReadersListResult = {
  slots: {
    slot: string;
    reader: string;
    source: "pcsc" | "terminal";
    present: boolean;
    kind: "cps" | "vitale" | "vitale1" | "unknown" | "empty";
    /** hex, empty when no card; pattern: "^([0-9a-f]{2})*$" */
    atr: string;
    pin_pad: boolean;
  }[];
};

/** Parameters of `rpc.discover`: The OpenRPC document of this API (the one these types were generated from). */
export type RpcDiscoverParams = Record<string, never>;

/** Result of `rpc.discover`. */
export type RpcDiscoverResult = {
  openrpc: string;
  info: Record<string, unknown>;
  methods: unknown[];
};

/** Parameters of `system.info`: Protocol version, daemon version, certificate fingerprint, terminal model and capabilities; the caller's own name and scopes; the limits that apply to it. */
export type SystemInfoParams = Record<string, never>;

/** Result of `system.info`. */
export type SystemInfoResult = {
  protocol: string;
  version: string;
  /** SHA-256 of the certificate's DER, lower-case hex; pattern: "^[0-9a-f]{64}$" */
  fingerprint: string;
  model: string;
  capabilities: string[];
  /** the caller's paired name */
  client: string;
  /** the scopes the caller was granted */
  scopes: string[];
  limits: {
    /** minimum: 0 */
    max_message_bytes: number;
    rate_per_second: number;
    /** minimum: 0 */
    rate_burst: number;
    /** minimum: 0 */
    max_connections_per_client: number;
    /** minimum: 0 */
    max_in_flight: number;
  };
};

/** Parameters of `upload.begin`: Start a chunked upload, for a payload larger than one message (mail.send attachments, dmp.feed CDA): give its size and SHA-256, then send it with upload.chunk in order, `chunk_size` bytes at most each, and finish with upload.commit, which checks the size and the digest. The method that uses it takes `upload_id` instead of the data, once. At most 8 uploads under way per client, 67108864 bytes each; one not used is deleted when the connection that began it closes (another connection of the same client cannot keep it), and in any case 600 s after upload.begin. */
export type UploadBeginParams = {
  /** minimum: 1; maximum: 67108864 */
  size: number;
  /** hex SHA-256; pattern: "^[0-9a-f]{64}$" */
  sha256: string;
};

/** Result of `upload.begin`. */
export type UploadBeginResult = {
  upload_id: string;
  chunk_size: number;
};

/** Parameters of `upload.cancel`: Drop an upload and its data. */
export type UploadCancelParams = {
  /** a committed upload (upload.begin / chunk / commit); pattern: "^[0-9a-f]{32}$" */
  upload_id: string;
};

/** Result of `upload.cancel`. */
export type UploadCancelResult = {
  upload_id: string;
  state: "cancelled";
};

/** Parameters of `upload.chunk`: The next part of an upload: `offset` is the number of bytes sent before it (a chunk out of order is refused with `bad_offset` and `data.expected`), `data` at most `chunk_size` bytes in base64; written to disk at once. */
export type UploadChunkParams = {
  /** a committed upload (upload.begin / chunk / commit); pattern: "^[0-9a-f]{32}$" */
  upload_id: string;
  /** minimum: 0 */
  offset: number;
  /** base64; maxLength: 699052 */
  data: string;
};

/** Result of `upload.chunk`. */
export type UploadChunkResult = {
  received: number;
};

/** Parameters of `upload.commit`: Finish an upload: every byte announced arrived (`upload_incomplete` otherwise) and its SHA-256 is the one announced (`digest_mismatch`: the upload is dropped). */
export type UploadCommitParams = {
  /** a committed upload (upload.begin / chunk / commit); pattern: "^[0-9a-f]{32}$" */
  upload_id: string;
};

/** Result of `upload.commit`. */
export type UploadCommitResult = {
  upload_id: string;
  state: "committed";
};

/** Parameters of `vitale.read`: Read the Vitale card: the insured person, every beneficiary with NIR, INS (with OID) and INS-C, rights. */
export type VitaleReadParams = Record<string, never>;

/** Result of `vitale.read`. */
export type VitaleReadResult = {
  card: {
    type: string;
    serial: string;
    test_card: boolean;
    /** YYYYMMDD; pattern: "^[0-9]{8}$" */
    validity_start: string;
    /** YYYYMMDD; pattern: "^[0-9]{8}$" */
    end_of_validity: string;
  };
  insured: {
    /** 13 characters and the 2-digit key; pattern: "^[0-9]{6}[0-9AB][0-9]{8}$" */
    nir: string;
    regime: string;
    caisse: string;
    centre: string;
  };
  /** minItems: 1 */
  beneficiaries: {
    /** 0 insured, 1 ascendant/other, 2 spouse, 6 child, ... (quality_name says it in words); minimum: 0 */
    quality: number;
    quality_name: string;
    name: string;
    birth_name: string;
    first_name: string;
    /** YYYYMMDD; a lunar date has a day or month out of range (lunar_birth_date); pattern: "^[0-9]{8}$" */
    birth_date: string;
    lunar_birth_date: boolean;
    /** minimum: 0 */
    birth_rank: number;
    nationality: string;
    /** 13 characters and the 2-digit key; pattern: "^[0-9]{6}[0-9AB][0-9]{8}$" */
    nir: string;
    /** a temporary number (NIA): no INS-C */
    temporary: boolean;
    ins: {
      /** the INS: the beneficiary's own NIR (or NIA), which may differ from the insured's nir; pattern: "^[0-9]{6}[0-9AB][0-9]{8}$" */
      value: string;
      /** pattern: "^[0-9]+(\\.[0-9]+)*$" */
      oid: string;
      kind: "NIR" | "NIA";
    };
    /** the historical INS-C (22 digits), null for a NIA; pattern: "^[0-9]{22}$" */
    ins_c: string | null;
    rights: {
      /** YYYYMMDD; pattern: "^[0-9]{8}$" */
      start: string;
      /** YYYYMMDD; pattern: "^[0-9]{8}$" */
      end: string;
    }[];
  }[];
};

/** Every method: its parameters and result. */
export interface Methods {
  /** A checkpoint of the audit log (sequence number and head hash) signed by the device; keep it off the terminal and check the log against it with `bifente audit verify --checkpoint FILE`. */
  "audit.checkpoint": { params: AuditCheckpointParams; result: AuditCheckpointResult };
  /** Paired clients. */
  "clients.list": { params: ClientsListParams; result: ClientsListResult };
  /** Revoke a client: refused at once. */
  "clients.revoke": { params: ClientsRevokeParams; result: ClientsRevokeResult };
  /** Show a question on the terminal; the patient answers OK or Cancel. */
  "consent.ask": { params: ConsentAskParams; result: ConsentAskResult };
  /** INTERNAL AUTHENTICATE of SHA-256(challenge) with the authentication key; needs the PIN verified for this client. A 32-byte challenge (the DMP host's shape) is refused: only the daemon logs in there. */
  "cps.authenticate": { params: CpsAuthenticateParams; result: CpsAuthenticateResult };
  /** Both CPS certificates (signature and authentication) with their validity, without the PIN: what a CAdES/XAdES signer needs before it signs. */
  "cps.certificates": { params: CpsCertificatesParams; result: CpsCertificatesResult };
  /** The professional on the CPS card and the PIN tries left (no PIN needed); with certificates: true, both certificates and their validity. */
  "cps.info": { params: CpsInfoParams; result: CpsInfoResult };
  /** End this client's verified state: the holder types the PIN again before its next signature (pin.state event with result reset). */
  "cps.logout": { params: CpsLogoutParams; result: CpsLogoutResult };
  /** PIN try counters and whether the PIN is verified now for this client (a PIN typed for another client does not count: the card asks this client for its own, docs/security.md). */
  "cps.pin_state": { params: CpsPinStateParams; result: CpsPinStateResult };
  /** PIN try counters. */
  "cps.pin_status": { params: CpsPinStatusParams; result: CpsPinStatusResult };
  /** Sign data with the CPS card (SHA-256, RSA PKCS#1 v1.5, split hash); needs the PIN verified for this client. The signature key (cps:sign) signs after the holder's OK on the terminal, which shows the client, the title and the digest's first hex digits; the authentication key needs cps:authenticate. */
  "cps.sign": { params: CpsSignParams; result: CpsSignResult };
  /** Sign a SHA-256 digest computed by the caller with the authentication key (PKCS#1 v1.5 DigestInfo); needs the PIN verified for this client and the holder's OK on the terminal (which shows the client, the title and the digest's first hex digits). The signature key signs only whole data (cps.sign: the card finishes the hash). */
  "cps.sign_digest": { params: CpsSignDigestParams; result: CpsSignDigestResult };
  /** The holder types the PIN on the terminal keypad; the result says ok, wrong (tries left), blocked or cancelled. No method takes a PIN. The verified PIN serves this client only: another client's call resets it (docs/security.md). */
  "cps.verify_pin": { params: CpsVerifyPinParams; result: CpsVerifyPinResult };
  /** Show a message on the terminal's display (ASCII, 16 columns x 8 lines, word-wrapped); it stays until the next screen. */
  "display.show": { params: DisplayShowParams; result: DisplayShowResult };
  /** Create the patient's DMP: the patient consents on the terminal (Vitale card in); the answer holds the patient's password once (also shown on the terminal display). */
  "dmp.create": { params: DmpCreateParams; result: DmpCreateResult };
  /** The author deletes a document after the patient asked for it (the entry stays, status deleted, its bytes wiped). */
  "dmp.delete": { params: DmpDeleteParams; result: DmpDeleteResult };
  /** Emergency access without consent: bris_de_glace or centre_15 (regulating doctors), with the professional's stated reason; then dmp.find / dmp.get from this client need no consent for this patient while it lasts (not from other clients; the patient's Cancel on the terminal ends it). */
  "dmp.emergency": { params: DmpEmergencyParams; result: DmpEmergencyResult };
  /** Does the patient have a DMP (no consent needed). */
  "dmp.exists": { params: DmpExistsParams; result: DmpExistsResult };
  /** Add a CDA R2 document (base64): the patient consents on the terminal; queued durably (state queued, queue_id) when the host is unreachable, delivered exactly once later. A CDA larger than one message is sent with upload.begin / chunk / commit and named by `upload_id` instead of `cda`. */
  "dmp.feed": { params: DmpFeedParams; result: DmpFeedResult };
  /** The documents this professional may see (the patient consents on the terminal, unless an emergency access is open). */
  "dmp.find": { params: DmpFindParams; result: DmpFindResult };
  /** One document and its CDA (base64), with the patient's consent or an open emergency access. */
  "dmp.get": { params: DmpGetParams; result: DmpGetResult };
  /** The patient's one-time code for the DMP patient space (with the INS and the password from dmp.create): the patient consents on the terminal (Vitale card in), the code is shown on the terminal display only, never returned, logged or audited. */
  "dmp.patient_code": { params: DmpPatientCodeParams; result: DmpPatientCodeResult };
  /** Feeds waiting for the DMP host (all: also delivered and failed ones); patients masked. */
  "dmp.queue": { params: DmpQueueParams; result: DmpQueueResult };
  /** The author changes a document's visibility (masked to professionals, hidden from the patient, from representatives, announced). */
  "dmp.visibility": { params: DmpVisibilityParams; result: DmpVisibilityResult };
  /** Receive event notifications on this connection (all, or the ones named): card.inserted, card.removed, reader.lost (a reader failed: not a card removal), reader.restored, pin.state, terminal.cancel (Cancel pressed outside a prompt), terminal.lost, terminal.restored. Replaces an earlier subscription. */
  "events.subscribe": { params: EventsSubscribeParams; result: EventsSubscribeResult };
  /** The professional's mailbox (POP3, nothing deleted): uid, from, the outer subject, date, size. */
  "mail.list": { params: MailListParams; result: MailListResult };
  /** Decrypt a message with the CPS (needs the PIN verified) and verify its signature: subject, from, signer, text, HTML, attachments (byte-identical, base64). */
  "mail.open": { params: MailOpenParams; result: MailOpenResult };
  /** Sign (CPS, needs the PIN verified) and encrypt a message to every recipient and the sender, then queue it for the operator. Recipients without a directory certificate are refused before anything is signed. */
  "mail.send": { params: MailSendParams; result: MailSendResult };
  /** Where a sent message is: queued, sending, sent or failed, with the attempts and the last error. */
  "mail.status": { params: MailStatusParams; result: MailStatusResult };
  /** Start pairing: the terminal shows a 6-digit code. */
  "pair.begin": { params: PairBeginParams; result: PairBeginResult };
  /** Finish pairing with the code read on the terminal; returns the client certificate. */
  "pair.complete": { params: PairCompleteParams; result: PairCompleteResult };
  /** Slots and what is in them. */
  "readers.list": { params: ReadersListParams; result: ReadersListResult };
  /** The OpenRPC document of this API (the one these types were generated from). */
  "rpc.discover": { params: RpcDiscoverParams; result: RpcDiscoverResult };
  /** Protocol version, daemon version, certificate fingerprint, terminal model and capabilities; the caller's own name and scopes; the limits that apply to it. */
  "system.info": { params: SystemInfoParams; result: SystemInfoResult };
  /** Start a chunked upload, for a payload larger than one message (mail.send attachments, dmp.feed CDA): give its size and SHA-256, then send it with upload.chunk in order, `chunk_size` bytes at most each, and finish with upload.commit, which checks the size and the digest. The method that uses it takes `upload_id` instead of the data, once. At most 8 uploads under way per client, 67108864 bytes each; one not used is deleted when the connection that began it closes (another connection of the same client cannot keep it), and in any case 600 s after upload.begin. */
  "upload.begin": { params: UploadBeginParams; result: UploadBeginResult };
  /** Drop an upload and its data. */
  "upload.cancel": { params: UploadCancelParams; result: UploadCancelResult };
  /** The next part of an upload: `offset` is the number of bytes sent before it (a chunk out of order is refused with `bad_offset` and `data.expected`), `data` at most `chunk_size` bytes in base64; written to disk at once. */
  "upload.chunk": { params: UploadChunkParams; result: UploadChunkResult };
  /** Finish an upload: every byte announced arrived (`upload_incomplete` otherwise) and its SHA-256 is the one announced (`digest_mismatch`: the upload is dropped). */
  "upload.commit": { params: UploadCommitParams; result: UploadCommitResult };
  /** Read the Vitale card: the insured person, every beneficiary with NIR, INS (with OID) and INS-C, rights. */
  "vitale.read": { params: VitaleReadParams; result: VitaleReadResult };
}

/** The methods' names, in order. */
export const METHOD_NAMES = [
  "audit.checkpoint",
  "clients.list",
  "clients.revoke",
  "consent.ask",
  "cps.authenticate",
  "cps.certificates",
  "cps.info",
  "cps.logout",
  "cps.pin_state",
  "cps.pin_status",
  "cps.sign",
  "cps.sign_digest",
  "cps.verify_pin",
  "display.show",
  "dmp.create",
  "dmp.delete",
  "dmp.emergency",
  "dmp.exists",
  "dmp.feed",
  "dmp.find",
  "dmp.get",
  "dmp.patient_code",
  "dmp.queue",
  "dmp.visibility",
  "events.subscribe",
  "mail.list",
  "mail.open",
  "mail.send",
  "mail.status",
  "pair.begin",
  "pair.complete",
  "readers.list",
  "rpc.discover",
  "system.info",
  "upload.begin",
  "upload.cancel",
  "upload.chunk",
  "upload.commit",
  "vitale.read",
] as const;

/** Scopes that allow each method (any of them; empty: any paired client). */
export const METHOD_SCOPES: Readonly<Record<MethodName, readonly string[]>> = {
  "audit.checkpoint": ["admin"],
  "clients.list": ["admin"],
  "clients.revoke": ["admin"],
  "consent.ask": ["dmp:emergency","dmp:read","dmp:write","terminal:display"],
  "cps.authenticate": ["cps:authenticate"],
  "cps.certificates": ["cps:sign","identity:read"],
  "cps.info": ["identity:read"],
  "cps.logout": ["cps:authenticate","cps:sign"],
  "cps.pin_state": ["cps:sign","identity:read"],
  "cps.pin_status": ["identity:read"],
  "cps.sign": ["cps:authenticate","cps:sign"],
  "cps.sign_digest": ["cps:authenticate"],
  "cps.verify_pin": ["cps:authenticate","cps:sign","mail:read","mail:send"],
  "display.show": ["terminal:display"],
  "dmp.create": ["dmp:write"],
  "dmp.delete": ["dmp:write"],
  "dmp.emergency": ["dmp:emergency"],
  "dmp.exists": ["dmp:emergency","dmp:read","dmp:write"],
  "dmp.feed": ["dmp:write"],
  "dmp.find": ["dmp:emergency","dmp:read"],
  "dmp.get": ["dmp:emergency","dmp:read"],
  "dmp.patient_code": ["dmp:read"],
  "dmp.queue": ["dmp:write"],
  "dmp.visibility": ["dmp:write"],
  "events.subscribe": ["identity:read"],
  "mail.list": ["mail:read"],
  "mail.open": ["mail:read"],
  "mail.send": ["mail:send"],
  "mail.status": ["mail:send"],
  "pair.begin": [],
  "pair.complete": [],
  "readers.list": ["identity:read"],
  "rpc.discover": [],
  "system.info": [],
  "upload.begin": [],
  "upload.cancel": [],
  "upload.chunk": [],
  "upload.commit": [],
  "vitale.read": ["identity:read"],
};

/** Every error code with its meaning and the `data.reason` values it comes with. */
export const ERRORS = {
  /** not JSON (id is null) */
  "-32700": ["parse_error"],
  /** not a JSON-RPC 2.0 request object, or an id that is not a string or an integer (fractions are refused); id is the request's when it could be read, else null */
  "-32600": ["invalid_request","batch_not_supported"],
  /** unknown method */
  "-32601": ["method_not_found"],
  /** parameters do not match the schema (positional `params` arrays included: named parameters only), an unknown client name, an emergency access without a reason */
  "-32602": ["invalid_params","unknown_client","reason_required","too_many_uploads","unknown_upload","upload_committed","bad_offset","upload_incomplete","digest_mismatch"],
  /** a bug; details are in the daemon's log */
  "-32603": ["internal_error"],
  /** the client must pair first */
  "-32000": ["not_paired"],
  /** the client lacks a scope, or asks what no client may: a challenge of the DMP host's shape (docs/security.md) */
  "-32001": ["missing_scope","challenge_reserved"],
  /** the client's certificate was revoked; the daemon closes the socket with 4403 (a revocation closes open sockets first, so the error is seen on the next connection) */
  "-32002": ["revoked"],
  /** too many calls, too many prompts on the terminal (docs/security.md), or too many connections for this client (sent with id null right before the close 1008) */
  "-32003": ["rate_limited","too_many_connections","prompt_pending"],
  /** a message or a decoded parameter larger than its limit (id is null when the message was too large to be read) */
  "-32004": ["too_large"],
  /** the terminal's disk is nearly full: new mail, DMP feeds to queue and uploads are refused before anything is written (what is stored stays; docs/edged.md, "Disk space") */
  "-32005": ["disk_full"],
  /** card problem */
  "-32010": ["no_card","card_removed","card_busy","timeout","card_unreadable","card_refused","reader_error","other_professional"],
  /** PIN problem: a signature or decryption needs the PIN first (cps.verify_pin reports wrong/blocked/cancelled in its result, not as errors) */
  "-32020": ["wrong_pin","pin_blocked","pin_cancelled","no_pin_pad","pin_required"],
  /** pairing refused */
  "-32030": ["invalid_request","unknown_pairing","expired","wrong_code","locked_out","busy","duplicate_name"],
  /** the terminal cannot ask, or the patient did not consent (DMP), or the holder did not confirm a signature on the terminal */
  "-32040": ["no_terminal","consent_refused","consent_timeout","vitale_required","ins_not_on_card","signature_refused","signature_timeout"],
  /** secure mail refused */
  "-32050": ["unknown_recipient","attachment_too_large","message_too_large","signature_invalid","certificate_invalid","not_for_this_recipient","decryption_failed","sender_mismatch","not_encrypted","not_signed","malformed_message","unsupported_algorithm","unsuitable_recipient","signing_failed","operator_unavailable","operator_refused","no_such_message","not_configured","mail_error"],
  /** the DMP host refused, or cannot be reached */
  "-32060": ["host_unreachable","host_untrusted","dmp_not_configured","cda_invalid","ins_invalid","ins_mismatch","dmp_exists","dmp_not_found","unknown_document","outside_access_matrix","insurer_forbidden","occupational_needs_express_consent","emergency_opposed","not_regulating_doctor","consent_forged","consent_expired","consent_replayed"],
} as const;

/** A documented `data.reason` (some codes, e.g. the DMP host's, add open-ended ones). */
export type ErrorReason = (typeof ERRORS)[keyof typeof ERRORS][number];

/** Params of the `card.inserted` event: A card was inserted in a slot. */
export type CardInsertedEvent = {
  slot: string;
  reader: string;
  kind: "cps" | "vitale" | "vitale1" | "unknown" | "empty";
  /** Unix time in seconds */
  time: number;
  /** increases by one for each event the daemon publishes (all kinds): events arrive in seq order; with a subscription to every event, a gap means events were missed (`dropped` counts them in any case); minimum: 1 */
  seq: number;
  /** events this connection lost since the last one it received, because it read too slowly; minimum: 1 */
  dropped?: number;
};

/** Params of the `card.removed` event: A card was removed from a slot (`kind` is what it was). */
export type CardRemovedEvent = {
  slot: string;
  reader: string;
  kind: "cps" | "vitale" | "vitale1" | "unknown" | "empty";
  /** Unix time in seconds */
  time: number;
  /** increases by one for each event the daemon publishes (all kinds): events arrive in seq order; with a subscription to every event, a gap means events were missed (`dropped` counts them in any case); minimum: 1 */
  seq: number;
  /** events this connection lost since the last one it received, because it read too slowly; minimum: 1 */
  dropped?: number;
};

/** Params of the `pin.state` event: The outcome of a PIN entry, for every subscriber. */
export type PinStateEvent = {
  result: "ok" | "wrong" | "blocked" | "cancelled" | "reset";
  /** minimum: 0 */
  tries_left: number;
  /** Unix time in seconds */
  time: number;
  /** increases by one for each event the daemon publishes (all kinds): events arrive in seq order; with a subscription to every event, a gap means events were missed (`dropped` counts them in any case); minimum: 1 */
  seq: number;
  /** events this connection lost since the last one it received, because it read too slowly; minimum: 1 */
  dropped?: number;
};

/** Params of the `reader.lost` event: A reader failed or went away (pcscd lost, reader unplugged): the card it held (`kind`) cannot be reached; calls that need a card of that kind get `reader_error`, not `card_removed` or `no_card`, until the reader is back or such a card is inserted elsewhere (other kinds: `no_card`). `reader.restored` follows when it is back. */
export type ReaderLostEvent = {
  slot: string;
  reader: string;
  kind: "cps" | "vitale" | "vitale1" | "unknown" | "empty";
  reason: string;
  /** Unix time in seconds */
  time: number;
  /** increases by one for each event the daemon publishes (all kinds): events arrive in seq order; with a subscription to every event, a gap means events were missed (`dropped` counts them in any case); minimum: 1 */
  seq: number;
  /** events this connection lost since the last one it received, because it read too slowly; minimum: 1 */
  dropped?: number;
};

/** Params of the `reader.restored` event: A lost reader is back; a card in it is announced by card.inserted. */
export type ReaderRestoredEvent = {
  slot: string;
  reader: string;
  /** Unix time in seconds */
  time: number;
  /** increases by one for each event the daemon publishes (all kinds): events arrive in seq order; with a subscription to every event, a gap means events were missed (`dropped` counts them in any case); minimum: 1 */
  seq: number;
  /** events this connection lost since the last one it received, because it read too slowly; minimum: 1 */
  dropped?: number;
};

/** Params of the `terminal.cancel` event: Cancel was pressed on the terminal outside a prompt. */
export type TerminalCancelEvent = {
  /** Unix time in seconds */
  time: number;
  /** increases by one for each event the daemon publishes (all kinds): events arrive in seq order; with a subscription to every event, a gap means events were missed (`dropped` counts them in any case); minimum: 1 */
  seq: number;
  /** events this connection lost since the last one it received, because it read too slowly; minimum: 1 */
  dropped?: number;
};

/** Params of the `terminal.lost` event: The daemon lost the link to the terminal (unplugged, reset). */
export type TerminalLostEvent = {
  reason?: string;
  /** Unix time in seconds */
  time: number;
  /** increases by one for each event the daemon publishes (all kinds): events arrive in seq order; with a subscription to every event, a gap means events were missed (`dropped` counts them in any case); minimum: 1 */
  seq: number;
  /** events this connection lost since the last one it received, because it read too slowly; minimum: 1 */
  dropped?: number;
};

/** Params of the `terminal.restored` event: The link to the terminal is back. */
export type TerminalRestoredEvent = {
  /** Unix time in seconds */
  time: number;
  /** increases by one for each event the daemon publishes (all kinds): events arrive in seq order; with a subscription to every event, a gap means events were missed (`dropped` counts them in any case); minimum: 1 */
  seq: number;
  /** events this connection lost since the last one it received, because it read too slowly; minimum: 1 */
  dropped?: number;
};

/** Every event (notification) and its params. */
export interface Events {
  "card.inserted": CardInsertedEvent;
  "card.removed": CardRemovedEvent;
  "pin.state": PinStateEvent;
  "reader.lost": ReaderLostEvent;
  "reader.restored": ReaderRestoredEvent;
  "terminal.cancel": TerminalCancelEvent;
  "terminal.lost": TerminalLostEvent;
  "terminal.restored": TerminalRestoredEvent;
}

/** A method's name. */
export type MethodName = keyof Methods;
/** A method's parameters. */
export type Params<M extends MethodName> = Methods[M]["params"];
/** A method's result. */
export type Result<M extends MethodName> = Methods[M]["result"];
/** An event's name (any string when the document declares none). */
export type EventName = [keyof Events] extends [never] ? string : keyof Events & string;
/** An event's params (with `time`, and `dropped` after an overflow). */
export type EventParams<E extends EventName> = E extends keyof Events ? Events[E]
  : { time: number; dropped?: number; [key: string]: unknown };
