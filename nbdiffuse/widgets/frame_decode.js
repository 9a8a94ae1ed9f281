// Frames as the kernel encodes them (nbdiffuse/widgets/frames.py) -> bitmaps. Shared by every widget's
// module (widgets/assets.py puts this file first).
//
// A frame is JPEG, PNG or WebP bytes, or, for frames of at most 32 x 32 pixels (live frames at a
// small model's latent size), raw RGB after a 10-byte header: "NBDRGB", width and height as
// little-endian uint16. At that size raw pixels are no larger than a JPEG and lossless.

const RAW_MAGIC = "NBDRGB";
const RAW_HEADER = 10;

function asDataView(buf) {
  if (buf instanceof DataView) return buf;
  if (buf instanceof ArrayBuffer) return new DataView(buf);
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

function isRaw(view) {
  if (view.byteLength < RAW_HEADER) return false;
  for (let i = 0; i < RAW_MAGIC.length; i++) if (view.getUint8(i) !== RAW_MAGIC.charCodeAt(i)) return false;
  return true;
}

// The MIME type of encoded bytes (for a Blob or an <img>); raw frames have none.
function mimeOf(view) {
  const b0 = view.getUint8(0);
  if (b0 === 0x89) return "image/png";
  if (b0 === 0xff) return "image/jpeg";
  return "image/webp"; // "RIFF"
}

function rawImage(view) {
  const width = view.getUint16(6, true), height = view.getUint16(8, true);
  const n = width * height;
  if (!n || view.byteLength !== RAW_HEADER + 3 * n) {
    throw new Error(`raw frame of ${view.byteLength} bytes does not hold ${width} x ${height} RGB pixels`);
  }
  const src = new Uint8Array(view.buffer, view.byteOffset + RAW_HEADER, 3 * n);
  const rgba = new Uint8ClampedArray(4 * n);
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    rgba[4 * i] = src[j];
    rgba[4 * i + 1] = src[j + 1];
    rgba[4 * i + 2] = src[j + 2];
    rgba[4 * i + 3] = 255;
  }
  return new ImageData(rgba, width, height);
}

// A promise of the bitmap, or of null for an empty buffer: a view the run does not have (x0 of
// a pipeline that gives only x_t). Never throws: it runs inside trait-change handlers, where a
// throw aborts the rest of that state update; a frame that cannot be read is a rejected promise.
function decodeFrame(buf) {
  try {
    if (!buf || !buf.byteLength) return Promise.resolve(null);
    const view = asDataView(buf);
    if (isRaw(view)) return createImageBitmap(rawImage(view));
    return createImageBitmap(new Blob([view], { type: mimeOf(view) }));
  } catch (err) {
    return Promise.reject(err);
  }
}

// Decoded bitmaps, keyed by the buffer object itself: a trait change brings new buffers, and
// the old ones (and their bitmaps) are then collected. Several frames may share one buffer.
const FRAME_BITMAPS = new WeakMap();
function cachedFrame(buf) {
  if (!buf || !buf.byteLength) return Promise.resolve(null);
  const view = asDataView(buf);
  const key = buf.buffer || buf;
  let byKey = FRAME_BITMAPS.get(key);
  if (!byKey) FRAME_BITMAPS.set(key, (byKey = new Map()));
  const id = `${view.byteOffset}:${view.byteLength}`;
  if (!byKey.has(id)) byKey.set(id, decodeFrame(view));
  return byKey.get(id);
}

// Draw a frame on a canvas at its own size, the newest request only: an older decode finishing
// late must not overwrite a newer one. An empty buffer clears the canvas (data-empty="true").
function paintFrame(canvas, buf) {
  const token = (canvas._nbdToken = (canvas._nbdToken || 0) + 1);
  return cachedFrame(buf).then((image) => {
    if (canvas._nbdToken !== token) return;
    if (!image) {
      canvas.width = canvas.width; // clears
      canvas.dataset.empty = "true";
      return;
    }
    if (canvas.width !== image.width || canvas.height !== image.height) {
      canvas.width = image.width;
      canvas.height = image.height;
    }
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(image, 0, 0);
    canvas.dataset.empty = "false";
  });
}
