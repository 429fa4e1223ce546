// The mksgate demo page: opens the console link from ?link= with noVNC or
// VMware's HTML console (wmks 2.1.0, ?client=wmks; ?legacy=1 turns on its
// uint8utf8 mode, as VMware Cloud Director uses it), and on a refusal asks
// the demo server which decision the gateway logged.
import RFB from '/novnc/core/rfb.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// The .vmx path the page names in uint8utf8 (Cloud Director) mode; a real
// portal has it from Cloud Director's acquireMksTicket answer.
const DEMO_VMX_PATH = '[datastore1] mksgate-demo-vm/mksgate-demo-vm.vmx';
const page = {
  client: params.get('client') === 'wmks' ? 'wmks' : 'novnc',
  legacy: params.get('legacy') === '1',
  rfb: null,
  link: null,
  host: null,
  phase: 'idle',
  connected: false,
  drawn: false,
  code: null,
  decisionsBefore: null,
  attempt: 0,
  wmksConnectedAt: null,
  wmksDisconnectedAt: null,
  wmksErrors: [],
};

function setStatus(phase, text) {
  page.phase = phase;
  document.body.dataset.state = phase;
  $('status').dataset.state = phase;
  $('status').textContent = text;
}

function claimsOf(link) {
  try {
    const token = new URL(link).searchParams.get('token') || '';
    const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(b64 + '==='.slice((b64.length + 3) % 4)));
  } catch (e) {
    return null;
  }
}

async function decisions(after) {
  const q = after == null ? '' : `?after=${after}`;
  const r = await fetch(`/decisions${q}`, { cache: 'no-store' });
  return r.json();
}

// Distinct colours and luminance spread of the console canvas.
function canvasStats() {
  // wmks keeps more than one canvas; the console is the largest.
  const canvas = [...$('screen').querySelectorAll('canvas')]
    .sort((a, b) => b.width * b.height - a.width * a.height)[0];
  if (!canvas || !canvas.width || !canvas.height) return null;
  canvas.dataset.console = '1';
  const ctx = canvas.getContext('2d');
  const { data } = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const colours = new Set();
  let sum = 0;
  let sumSq = 0;
  const n = data.length / 4;
  for (let i = 0; i < data.length; i += 4) {
    const rgb = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    if (colours.size < 4096) colours.add(rgb);
    const y = 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
    sum += y;
    sumSq += y * y;
  }
  const mean = sum / n;
  return {
    width: canvas.width,
    height: canvas.height,
    distinctColours: colours.size,
    lumaStddev: Math.sqrt(Math.max(0, sumSq / n - mean * mean)),
  };
}

function watchDrawing(attempt) {
  const tick = () => {
    if (attempt !== page.attempt || !page.connected) return;
    const s = canvasStats();
    if (s && s.distinctColours >= 2) {
      page.drawn = true;
      document.body.dataset.drawn = 'true';
      $('drawn').textContent =
        `console drawn: ${s.width}x${s.height}, ${s.distinctColours} colours`;
      return;
    }
    setTimeout(tick, 200);
  };
  tick();
}

async function showDecision(attempt, expectRefusal) {
  // The decision line reaches Envoy's log within ~50 ms; allow 3 s.
  for (let i = 0; i < 30 && page.decisionsBefore != null; i++) {
    if (attempt !== page.attempt) return null;
    try {
      const d = await decisions(page.decisionsBefore);
      if (d.decisions.length) {
        const last = d.decisions[d.decisions.length - 1];
        page.code = last.code;
        $('decision').dataset.code = last.code;
        $('decision').textContent =
          `gateway decision: ${last.code} (HTTP ${last.status})` +
          (last.cluster ? `, cluster ${last.cluster}` : '') +
          (last.ticket_sha256 ? `, ticket ${last.ticket_sha256}…` : '');
        return last;
      }
    } catch (e) {
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (expectRefusal) $('decision').textContent = 'gateway decision: none logged';
  return null;
}

async function onDisconnect(attempt, e) {
  if (attempt !== page.attempt) return;
  $('disconnect').disabled = true;
  page.rfb = null;
  if (page.connected) {
    page.connected = false;
    setStatus('disconnected', `Console closed (${e.detail.clean ? 'cleanly' : 'connection lost'}). Links are one-time: press New link to open it again.`);
    return;
  }
  // A refused WebSocket upgrade only tells the page "closed, code 1006";
  // the reason is in the gateway's log.
  setStatus('checking', 'The gateway did not open the console; reading its decision…');
  const d = await showDecision(attempt, true);
  if (attempt !== page.attempt) return;
  if (d && d.code !== 'admitted') {
    setStatus('refused', `Refused by the gateway: ${d.code} (HTTP ${d.status}).`);
    if (d.code === 'replayed') {
      hint('This link was used already (one-time links). Press New link.');
    } else if (d.code === 'expired') {
      hint('The link expired. Press New link.');
    }
  } else if (d) {
    setStatus('refused', 'The gateway admitted the link but the console closed before it opened.');
  } else {
    setStatus('unreachable', 'The console did not open and the gateway logged no decision.');
    hint('Is the gateway\'s certificate trusted by this browser? See the instructions make demo printed ' +
      '(open https://' + new URL(page.link).host + '/ once and accept it, then press New link).');
  }
}

function hint(text) {
  $('hint').hidden = !text;
  $('hint').textContent = text || '';
}

function disconnect() {
  page.attempt += 1;
  if (page.rfb) {
    try { page.rfb.disconnect(); } catch (e) { /* already closed */ }
  }
  page.rfb = null;
  page.connected = false;
  page.drawn = false;
  page.code = null;
  delete document.body.dataset.drawn;
  $('screen').replaceChildren();
  $('drawn').textContent = '';
  $('decision').textContent = '';
  $('decision').dataset.code = '';
  hint('');
}

async function connect(link) {
  disconnect();
  const attempt = page.attempt;
  page.link = link;
  const claims = claimsOf(link);
  page.host = claims && (claims.host || claims.url) || '?';
  $('link').textContent = link;
  $('claims').textContent = claims
    ? `host ${claims.host || claims.url}, sub ${claims.sub || '-'}, jti ${claims.jti}, expires ${new Date(claims.exp * 1000).toLocaleTimeString()}`
    : 'not a readable JWS';
  if (claims && claims.host && [...$('host').options].some((o) => o.value === claims.host)) {
    $('host').value = claims.host;
  }
  try {
    page.decisionsBefore = (await decisions()).count;
  } catch (e) {
    page.decisionsBefore = null;
  }
  if (attempt !== page.attempt) return;
  setStatus('connecting', `Connecting to ${page.host} through the gateway…`);
  const events = {
    connected: () => {
      if (attempt !== page.attempt) return;
      page.connected = true;
      $('disconnect').disabled = false;
      setStatus('connected', `Connected to ${page.host} through the gateway (${clientName()}).`);
      showDecision(attempt, false);
      watchDrawing(attempt);
    },
    disconnected: (clean) => onDisconnect(attempt, { detail: { clean } }),
  };
  try {
    page.rfb = page.client === 'wmks' ? await openWmks(link, events) : openNoVNC(link, events);
  } catch (e) {
    setStatus('refused', `Could not open the link: ${e.message}`);
  }
}

function clientName() {
  if (page.client !== 'wmks') return 'noVNC';
  return `VMware HTML console${page.legacy ? ', uint8utf8' : ''}`;
}

// noVNC: `binary` only.
function openNoVNC(link, events) {
  const rfb = new RFB($('screen'), link, { wsProtocols: ['binary'] });
  rfb.scaleViewport = false;
  rfb.resizeSession = false;
  rfb.addEventListener('connect', () => {
    events.connected();
    rfb.focus();
  });
  rfb.addEventListener('disconnect', (e) => events.disconnected(e.detail.clean));
  rfb.addEventListener('desktopname', (e) => {
    $('drawn').dataset.desktop = e.detail.name;
  });
  return { disconnect: () => rfb.disconnect() };
}

// VMware's HTML console: offers `binary` and `vmware-vvc` (and `uint8utf8`
// in legacy mode) and speaks WebMKS; loaded only when asked for.
async function openWmks(link, events) {
  const { default: WMKS } = await import('/wmks/wmks.js');
  const holder = document.createElement('div');
  holder.id = 'wmks-screen';
  $('screen').replaceChildren(holder);
  const wmks = WMKS.createWMKS('wmks-screen', {
    rescale: false,
    changeResolution: false,
    position: WMKS.CONST.Position.LEFT_TOP,
    enableUint8Utf8: page.legacy,
    // Cloud Director's console proxy asks for the VM's .vmx path first;
    // wmks runs uint8utf8 only after that handshake.
    VCDProxyHandshakeVmxPath: page.legacy ? DEMO_VMX_PATH : null,
  });
  let opened = false;
  let gone = false;
  wmks.register(WMKS.CONST.Events.CONNECTION_STATE_CHANGE, (evt, data) => {
    const S = WMKS.CONST.ConnectionState;
    if (data.state === S.CONNECTED && !opened) {
      opened = true;
      page.wmksConnectedAt = Date.now();
      events.connected();
    } else if (data.state === S.DISCONNECTED && !gone) {
      gone = true;
      page.wmksDisconnectedAt = Date.now();
      events.disconnected(false);
    }
  });
  wmks.register(WMKS.CONST.Events.ERROR, (evt, data) => {
    page.wmksErrors.push(data && data.errorType);
  });
  wmks.connect(link);
  return { disconnect: () => wmks.disconnect() };
}

async function newLink() {
  const host = $('host').value;
  const r = await fetch(`/link?host=${encodeURIComponent(host)}`, { cache: 'no-store' });
  if (!r.ok) {
    setStatus('refused', `The demo server could not sign a link: ${await r.text()}`);
    return;
  }
  const j = await r.json();
  const client = $('client').value;
  const legacy = page.legacy ? '&legacy=1' : '';
  const q = `?link=${encodeURIComponent(j.link)}&client=${client}${legacy}`;
  if (client !== page.client) {
    location.assign(`/${q}`); // the other client: a fresh page
    return;
  }
  history.replaceState(null, '', `/${q}`);
  await connect(j.link);
}

async function main() {
  try {
    const hosts = await (await fetch('/hosts', { cache: 'no-store' })).json();
    for (const h of hosts) $('host').add(new Option(h, h));
  } catch (e) { /* the select stays empty */ }
  $('client').value = page.client;
  $('new-link').addEventListener('click', () => newLink());
  $('disconnect').addEventListener('click', () => {
    if (page.rfb) page.rfb.disconnect();
  });
  const link = params.get('link');
  if (link) {
    await connect(link);
  } else {
    setStatus('idle', 'No link in the address: press New link.');
  }
}

window.mksgateDemo = {
  get phase() { return page.phase; },
  get drawn() { return page.drawn; },
  get code() { return page.code; },
  get host() { return page.host; },
  get client() { return page.client; },
  get legacy() { return page.legacy; },
  // wmks: when it reported connected and disconnected (ms since epoch).
  get wmksConnectedAt() { return page.wmksConnectedAt; },
  get wmksDisconnectedAt() { return page.wmksDisconnectedAt; },
  get wmksErrors() { return page.wmksErrors.slice(); },
  status: () => $('status').textContent,
  decision: () => $('decision').textContent,
  canvasStats,
};

main();
