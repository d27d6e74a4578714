// A sliding-window rate limiter: at most `limit` events in any `windowMs` span.
class RateWindow {
  constructor(limit, windowMs) {
    if (limit < 1) throw new RangeError("limit must be at least 1");
    this.limit = limit;
    this.windowMs = windowMs;
    this.times = [];
  }

  // Drop timestamps that have left the window.
  expire(now) {
    while (this.times.length && this.times[0] <= now - this.windowMs) {
      this.times.shift();
    }
  }

  // Milliseconds until one more event fits; 0 when it fits now.
  waitTime(now) {
    this.expire(now);
    if (this.times.length < this.limit) return 0;
    return this.times[0] + this.windowMs - now;
  }

  tryRecord(now) {
    if (this.waitTime(now) > 0) return false;
    this.times.push(now);
    return true;
  }
}

module.exports = { RateWindow };
