'use strict';
// Check characters of the two national identifiers the partner documents name
// through their code tables: the 18-character resident ID (GB 11643, ISO 7064
// MOD 11-2, table code 111 / yue "SFZ") and the unified social credit code
// (GB 32100-2015, table code 001 / yue "TYSHXYDM"). A strict government
// platform validates both; so do the mocks.

function residentIdProblem(s) {
  if (!/^\d{17}[\dX]$/.test(s)) return 'resident ID must be 17 digits and a digit or X';
  const y = Number(s.slice(6, 10)), m = Number(s.slice(10, 12)), d = Number(s.slice(12, 14));
  const dt = new Date(Date.UTC(y, m - 1, d));
  if (y < 1900 || dt.getUTCFullYear() !== y || dt.getUTCMonth() !== m - 1 || dt.getUTCDate() !== d || dt.getTime() > Date.now()) return 'resident ID birth date is not a real past date';
  const w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += Number(s[i]) * w[i];
  if ('10X98765432'[sum % 11] !== s[17]) return 'resident ID check character is wrong';
  return null;
}

const USCC_CHARS = '0123456789ABCDEFGHJKLMNPQRTUWXY';
function usccProblem(s) {
  if (!/^[0-9A-HJ-NPQRTUWXY]{18}$/.test(s)) return 'unified social credit code must be 18 characters of the GB 32100 alphabet';
  const w = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
  let sum = 0;
  for (let i = 0; i < 17; i++) sum += USCC_CHARS.indexOf(s[i]) * w[i];
  const c = (31 - (sum % 31)) % 31;
  if (USCC_CHARS[c] !== s[17]) return 'unified social credit code check character is wrong';
  return null;
}

// National ID-type table (证件类型) shared by both documents.
const NATIONAL_ID_TYPES = { '111': 'resident ID card', '414': 'passport', '516': 'HK/Macao permit', '511': 'Taiwan permit', '001': 'unified social credit code' };

// Problem with (type, number) or null. Passports and permits: no published
// check character, so only "non-empty, no whitespace".
function idProblem(type, number) {
  if (type === '111') return residentIdProblem(number);
  if (type === '001') return usccProblem(number);
  if (!/^\S+$/.test(number)) return 'ID number must be non-empty without whitespace';
  return null;
}

module.exports = { residentIdProblem, usccProblem, idProblem, NATIONAL_ID_TYPES };
